"""The judge card: one JSON file (``egt_judge.json``) beside every judge egt saves, holding what the judge
needs to be used as it was trained and evaluated (docs/judge.md).

Written by :func:`egt.training.trained.save_model` (SFT and RL) inside the model directory, so it is
renamed into place with the weights. :class:`egt.judge.Judge` reads it; a user without egt reads it too:
the prompt template's name and text (instruction and body, with ``{instruction}``, ``{query}``,
``{response_1}``, ``{response_2}`` fields), the answer format, the pixel budget the processor resizes
images to, the generation settings (greedy unless the run evaluated with a temperature), the longest
prompt in tokens, the egt version and the model it started from.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from egt.data.prompt import ANSWER_RE, TEMPLATES, template_key
from egt.utils.atomic import write_json_atomic
from egt.utils.secrets import redact

log = logging.getLogger(__name__)
__all__ = ["CARD_FILE", "CARD_VERSION", "egt_version", "judge_card", "outside_card", "read_card", "write_card"]

CARD_FILE = "egt_judge.json"
CARD_VERSION = 1
ANSWER_FORMAT = {
    "output": "<think>reasoning</think><answer>d</answer>",
    "answer_regex": ANSWER_RE.pattern,
    "choices": [1, 2],
    "meaning": "d is the number of the better response as shown (1: the first, 2: the second)",
    "parse_failure": "anything but exactly one <answer> tag holding 1 or 2 (egt.data.prompt.parse_answer)",
}


def egt_version() -> str:
    """The installed egt distribution's version ("unknown" when egt runs from a source tree only)."""
    try:
        return metadata.version("egt")
    except metadata.PackageNotFoundError:
        return "unknown"


def template_entry(name: str) -> dict[str, str]:
    """A template's name, key (name + hash of its text, :func:`egt.data.prompt.template_key`) and text."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; choose from {sorted(TEMPLATES)}")
    instruction, body = TEMPLATES[name]
    return {"name": name, "key": template_key(name), "instruction": instruction, "body": body}


def processor_pixels(processor: Any) -> dict[str, int | None]:
    """The pixel budget the processor's image processor resizes to (``size`` shortest / longest edge in
    transformers 5.x, else ``min_pixels`` / ``max_pixels``); None where it has none."""
    ip = getattr(processor, "image_processor", None)
    size = dict(getattr(ip, "size", None) or {})
    lo = size.get("shortest_edge", getattr(ip, "min_pixels", None))
    hi = size.get("longest_edge", getattr(ip, "max_pixels", None))
    return {"min_pixels": None if lo is None else int(lo), "max_pixels": None if hi is None else int(hi)}


def _generation(e: Mapping[str, Any]) -> dict[str, Any]:
    g = dict(e.get("generation") or {})
    return {
        "temperature": float(e["temperature"]),
        "max_new_tokens": int(e["max_new_tokens"]),
        "top_k": g.get("top_k"),
        "top_p": g.get("top_p"),
        "repetition_penalty": g.get("repetition_penalty"),
        "use_checkpoint_defaults": bool(g.get("use_checkpoint_defaults", False)),
    }


def judge_card(
    cfg: Any, stage: str, started_from: str | Path, processor: Any, data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The card of a judge the ``stage`` (sft, rft, rl) stage trained from ``started_from`` with ``cfg`` (a resolved
    DictConfig); ``data`` is the data stage's result (its per-split counts and sources)."""
    from egt.utils.conf import to_container
    from egt.utils.secrets import config_container

    e = to_container(cfg.eval)
    full = config_container(cfg)
    # rft trains with the sft settings (rft.sft merged over them: the cfg it gets), so its card holds them too
    keys = (stage, *(("sft",) if stage == "rft" else ()), "stages", "seed", "model", "selection", "entropy")
    recipe = {k: full[k] for k in (*keys, "curriculum", "reward") if k in full}
    if stage == "rl" and cfg.data.get("hints") is not None:  # a hint changes RL's prompts (the RL key has it)
        recipe["hints"] = full["data"]["hints"]
    splits = {
        k: {"n": v.get("n"), **({"sources": v["sources"]} if v.get("sources") else {})}
        for k, v in ((data or {}).get("splits") or {}).items()
        if isinstance(v, dict)
    }
    return redact(
        {
            "format": "egt-judge",
            "card_version": CARD_VERSION,
            "egt_version": egt_version(),
            "stage": stage,
            "base_model": {
                "name": str(cfg.model.name),
                "path": cfg.model.get("path"),
                "started_from": str(started_from),
            },
            "template": template_entry(str(cfg.data.template)),
            "answer_format": ANSWER_FORMAT,
            "pixel_budget": processor_pixels(processor),
            "generation": _generation(e),
            "max_length": int(e["max_length"]),
            "data": {"name": str(cfg.data.name), "splits": splits},
            "recipe": recipe,
        }
    )


def outside_card(template: str, processor: Any, max_new_tokens: int = 256, max_length: int = 8192) -> dict[str, Any]:
    """A card for a checkpoint egt did not save: the given template, egt's greedy defaults (conf/eval)."""
    return {
        "format": "egt-judge",
        "card_version": CARD_VERSION,
        "egt_version": egt_version(),
        "stage": None,
        "base_model": None,
        "template": template_entry(template),
        "answer_format": ANSWER_FORMAT,
        "pixel_budget": processor_pixels(processor),
        "generation": _generation({"temperature": 0.0, "max_new_tokens": max_new_tokens}),
        "max_length": int(max_length),
        "data": None,
        "recipe": None,
    }


def write_card(model_dir: str | Path, card: Mapping[str, Any]) -> Path:
    """``<model_dir>/egt_judge.json`` (atomic)."""
    path = Path(model_dir) / CARD_FILE
    write_json_atomic(path, dict(card))
    return path


def read_card(model_dir: str | Path) -> dict[str, Any] | None:
    """The card in ``model_dir``, or None when it has none (a checkpoint egt did not save). Raises ValueError
    naming the file when it is not an egt judge card of a version this egt reads, or when its template's
    text is not the text this egt's template of that name has (its key differs)."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != "egt-judge":
        raise ValueError(f"{path}: field 'format' must be 'egt-judge', got {card.get('format')!r}")
    if card.get("card_version") != CARD_VERSION:
        raise ValueError(f"{path}: field 'card_version' is {card.get('card_version')!r}; this egt reads {CARD_VERSION}")
    name = card["template"]["name"]
    if name not in TEMPLATES or template_key(name) != card["template"]["key"]:
        raise ValueError(
            f"{path}: field 'template': this judge was trained with template {card['template']['key']!r}, whose "
            f"text this egt does not have (its {name!r} is {template_key(name)!r}); use the egt version the card "
            f"names ({card.get('egt_version')}) or pass template= explicitly"
        )
    return card
