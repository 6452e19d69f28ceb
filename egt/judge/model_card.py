"""The model card (``README.md``, the Hugging Face convention) of every judge egt saves, written from the
artifacts, never by hand: the judge card (``egt_judge.json``, :mod:`egt.judge.card`: base model, recipe,
data, template) and the benchmark numbers the eval stage measured (``egt_evals.json`` in the same
directory, one entry per benchmark, each a copy of the eval artifact's metrics).

The eval stage runs after the judge is saved, so it records its numbers here
(:func:`record_evaluation`) and rewrites the card, for the judges of the pipeline's own stages (an
outside ``eval.model_path`` is keyed by its content: it is never written to).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from egt.judge.card import read_card
from egt.utils.atomic import write_json_atomic, write_text_atomic

__all__ = ["EVALS_FILE", "CARD_METRICS", "read_evaluations", "record_evaluation", "render", "write_model_card"]

EVALS_FILE = "egt_evals.json"
# (metrics key, column): official (the benchmark's headline and overall) and debiased (mean over both orders)
CARD_METRICS = (
    ("headline", "official headline"),
    ("overall", "official overall"),
    ("order/debiased/overall", "debiased overall"),
    ("order/position_consistency", "position consistency"),
    ("parse_failure_rate", "parse failures"),
)


def read_evaluations(model_dir: str | Path) -> dict[str, Any]:
    """``{benchmark: entry}`` recorded in ``model_dir`` (empty when none)."""
    path = Path(model_dir) / EVALS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record_evaluation(model_dir: str | Path, result: Mapping[str, Any]) -> bool:
    """Record an eval artifact's ``metrics.json`` (``result``) for its benchmark in ``model_dir`` and rewrite the
    model card; False (nothing written) when ``model_dir`` holds no judge card (not a judge egt saved)."""
    if read_card(model_dir) is None:
        return False
    evals = read_evaluations(model_dir)
    bench = result["benchmark"]
    evals[bench["name"]] = {
        "eval_key": result["key"],
        "benchmark_version": bench.get("version"),
        "n_items": bench.get("n_items"),
        "headline_key": bench.get("headline_key"),
        "order": result["eval_config"].get("order"),
        "metrics": {k: result["metrics"].get(k) for k, _ in CARD_METRICS},
    }
    write_json_atomic(Path(model_dir) / EVALS_FILE, evals)
    write_model_card(model_dir)
    return True


def _pct(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) else f"{100 * x:.2f}"


def _section_eval(evals: Mapping[str, Any]) -> list[str]:
    if not evals:
        return ["Not evaluated yet: the eval stage adds its numbers here (`stages=[...,eval]`).", ""]
    head = "| benchmark | items | order | " + " | ".join(c for _, c in CARD_METRICS) + " |"
    lines = [
        "Accuracies in % as the eval stage measured them (egt_evals.json, from each eval artifact's metrics.json; "
        "official: the benchmark's own protocol and order; debiased: the mean over both presentation orders, "
        "eval.order=both).",
        "",
        head,
        "|" + "---|" * (3 + len(CARD_METRICS)),
    ]
    for name, e in sorted(evals.items()):
        vals = " | ".join(_pct(e["metrics"].get(k)) for k, _ in CARD_METRICS)
        lines.append(f"| {name} | {e.get('n_items')} | {e.get('order')} | {vals} |")
    return lines + ["", "The headline is the benchmark's own summary number (its `headline_key`).", ""]


def render(card: Mapping[str, Any], evals: Mapping[str, Any]) -> str:
    """The README.md text of a judge with judge card ``card`` and recorded evaluations ``evals``."""
    base = card.get("base_model") or {}
    t, g, data = card["template"], card["generation"], card.get("data") or {}
    front = {"library_name": "transformers", "pipeline_tag": "image-text-to-text"}
    front["tags"] = ["egt", "reward-model", "generative-judge", "multimodal"]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    lines += [f"# egt judge ({card.get('stage')} stage, base {base.get('name')})", ""]
    lines += [
        "A generative multimodal reward model trained with egt: it reads an image, a question and two responses, "
        "reasons in `<think>…</think>` and answers `<answer>1</answer>` or `<answer>2</answer>`. "
        "This card is written by egt from the run's artifacts.",
        "",
        "## Use",
        "",
        "```python",
        "from egt.judge import Judge",
        "judge = Judge.from_pretrained('<this directory>')",
        "v = judge.compare([image], question, response_1, response_2, order='both')",
        "print(v.verdict, v.probability, v.orders_agree)",
        "```",
        "",
        "Without egt: build the prompt from the template below, decode greedily with the settings below "
        "(ignore generation_config.json's sampling fields), parse the answer with the regex below.",
        "",
        "## Base model and recipe",
        "",
        f"- base model: `{base.get('name')}` (path {base.get('path')}); this stage started from "
        f"`{base.get('started_from')}`",
        f"- egt version {card.get('egt_version')}; the resolved config's key parts (secrets redacted):",
        "",
        "```yaml",
        yaml.safe_dump(card.get("recipe") or {}, sort_keys=True).strip(),
        "```",
        "",
        "## Data",
        "",
        f"Data set `{data.get('name')}` (counts after validation):",
        "",
        "| split | samples | sources |",
        "|---|---|---|",
    ]
    for split, s in sorted((data.get("splits") or {}).items()):
        src = ", ".join(f"{k}: {v}" for k, v in (s.get("sources") or {}).items()) or "–"
        lines.append(f"| {split} | {s.get('n')} | {src} |")
    lines += ["", "## Evaluation", ""] + _section_eval(evals)
    lines += [
        "## Prompt and answer format",
        "",
        f"Template `{t['name']}` (`{t['key']}`); instruction:",
        "",
        "```text",
        t["instruction"],
        "```",
        "",
        "User text (`{instruction}`, `{query}`, `{response_1}`, `{response_2}` filled in; every image before it):",
        "",
        "```text",
        t["body"],
        "```",
        "",
        f"Answer: `{card['answer_format']['answer_regex']}`; {card['answer_format']['meaning']}.",
        "",
        f"Generation: temperature {g['temperature']} (0 = greedy), max_new_tokens {g['max_new_tokens']}, "
        f"top_k {g['top_k']}, top_p {g['top_p']}, repetition_penalty {g['repetition_penalty']} (null = off); "
        f"prompts up to {card.get('max_length')} tokens; pixel budget {card['pixel_budget']}.",
        "",
        "## Limitations",
        "",
        "- Judged only on the benchmarks listed above, with this prompt and these settings; another prompt, "
        "pixel budget or sampling changes its answers.",
        "- A pairwise judge can prefer a position: the debiased column and position consistency say how much "
        "its verdict depends on the order (compare with `order='both'`).",
        "- It answers 1 or 2 even when both responses are equally good or bad (ties are not allowed by its "
        "prompt); an unparsed output is no verdict, never a guess.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path) -> Path | None:
    """``<model_dir>/README.md`` from its judge card and recorded evaluations (atomic); None without a card."""
    card = read_card(model_dir)
    if card is None:
        return None
    path = Path(model_dir) / "README.md"
    write_text_atomic(path, render(card, read_evaluations(model_dir)))
    return path
