"""The paper's recipe in GPU hours, from per-GPU rates (issue 37): ``python -m egt.report.cost_model RATES.json``.

A researcher planning ``experiment=paper`` asks how long SFT, the probe and RL take on their GPUs. This
model answers from two inputs, both in one JSON file (``docs/gpu/rates.json``) so that the next GPU
session updates the table by editing figures, not code:

- ``recipe``: the token counts of the paper's recipe (§3.1: 100,000 SFT trajectories, one epoch; a probe of
  the 17,000-pair RL pool; RL on 2,500 samples × 20 epochs with G completions each) and the lengths per
  sample they need (prompt with its image, target, completion);
- ``stacks``: per-GPU throughputs of a training stack (egt before issue 37, egt's goals, a published
  anchor), each figure with ``kind`` (``measured`` / ``published`` / ``estimated`` / ``goal``) and
  ``source``.

Per stage, on ``gpus`` GPUs that scale linearly (data parallel; an assumption the table states), with
``tps`` a rate in tokens per second per GPU:

- SFT: ``sft_samples · sft_tokens / (tps_sft · gpus)``;
- probe: decode ``probe_samples · probe_new / (tps_decode · gpus)`` + prefill
  ``probe_samples · prompt / (tps_forward · gpus)``;
- RL, with ``n = rl_prompts · G`` sequences: decode ``n · rl_new / (tps_decode · gpus)``; the no-grad
  log-prob passes (π_old, π_ref) ``passes · T_nograd / (tps_forward · gpus)``; the gradient pass
  ``T_grad / (tps_grad · gpus)``, where ``T`` counts each prompt once per group when the stack shares it
  (``shared_prompt`` for the no-grad passes, ``shared_prompt_grad`` for the gradient pass, which defaults to
  it: ``rl_prompts · prompt + n · rl_new``) and G times otherwise (``n · (prompt + rl_new)``);
- a stack with one end-to-end RL rate (``rl_tokens_per_s``, e.g. EasyR1's published throughput, which
  counts prompt and response tokens of every sequence) gives RL as ``n · (prompt + rl_new) / (tps · gpus)``.

A stack's missing stage is "–" (an anchor published for RL only). Hours are wall hours of the whole
node. Every cell is as good as its least certain rate: the table marks a stage ``estimated`` unless
every rate in it is ``measured`` or ``published`` (the recipe's lengths per sample are estimates in every
cell, which the table's note says).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["stage_hours", "cost_table", "main"]

_SOLID = ("measured", "published")


def _rate(stack: dict[str, Any], name: str) -> Optional[tuple[float, str]]:
    r = stack.get(name)
    if r is None:
        return None
    if isinstance(r, (int, float)):
        return float(r), "estimated"
    return float(r["value"]), str(r.get("kind", "estimated"))


def _val(recipe: dict[str, Any], name: str) -> float:
    v = recipe[name]
    return float(v["value"] if isinstance(v, dict) else v)


def stage_hours(recipe: dict[str, Any], stack: dict[str, Any], gpus: int) -> dict[str, Optional[tuple[float, str]]]:
    """``{"sft" | "probe" | "rl": (hours, "measured" | "estimated") or None}`` for one stack on ``gpus`` GPUs
    (the module docstring has the formulas).

    >>> recipe = {"sft_samples": 10, "sft_tokens": 100, "probe_samples": 10, "prompt_tokens": 50,
    ...           "probe_new_tokens": 20, "rl_prompts": 10, "rl_group": 2, "rl_new_tokens": 20}
    >>> stack = {"sft_tokens_per_s": {"value": 1, "kind": "measured"}, "decode_tokens_per_s": 1,
    ...          "forward_tokens_per_s": {"value": 10, "kind": "measured"},
    ...          "grad_tokens_per_s": {"value": 5, "kind": "measured"}, "nograd_passes": 2, "shared_prompt": True}
    >>> h = stage_hours(recipe, stack, gpus=1)
    >>> round(h["sft"][0] * 3600), h["sft"][1]      # 10 · 100 / 1
    (1000, 'measured')
    >>> round(h["probe"][0] * 3600), h["probe"][1]  # 10 · 20 / 1 + 10 · 50 / 10; decode rate unmarked
    (250, 'estimated')
    >>> round(h["rl"][0] * 3600)  # decode 20·20/1 = 400; T = 10·50 + 20·20 = 900: 2·900/10 + 900/5 = 360
    760
    """
    gpus = max(int(gpus), 1)
    out: dict[str, Optional[tuple[float, str]]] = {"sft": None, "probe": None, "rl": None}

    def hours(parts: list[tuple[float, Optional[tuple[float, str]]]]) -> Optional[tuple[float, str]]:
        if any(r is None for _, r in parts):
            return None
        seconds = sum(tokens / (r[0] * gpus) for tokens, r in parts)
        kind = "measured" if all(r[1] in _SOLID for _, r in parts) else "estimated"
        return seconds / 3600, kind

    prompt = _val(recipe, "prompt_tokens")
    out["sft"] = hours([(_val(recipe, "sft_samples") * _val(recipe, "sft_tokens"), _rate(stack, "sft_tokens_per_s"))])
    decode, forward = _rate(stack, "decode_tokens_per_s"), _rate(stack, "forward_tokens_per_s")
    n_probe = _val(recipe, "probe_samples")
    out["probe"] = hours([(n_probe * _val(recipe, "probe_new_tokens"), decode), (n_probe * prompt, forward)])
    prompts, new = _val(recipe, "rl_prompts"), _val(recipe, "rl_new_tokens")
    n = prompts * _val(recipe, "rl_group")
    end_to_end = _rate(stack, "rl_tokens_per_s")
    if end_to_end is not None:
        out["rl"] = hours([(n * (prompt + new), end_to_end)])
    else:
        shared = bool(stack.get("shared_prompt", False))
        shared_grad = bool(stack.get("shared_prompt_grad", shared))

        def tokens(share: bool) -> float:
            return (prompts * prompt if share else n * prompt) + n * new

        passes = float(stack.get("nograd_passes", 2))
        out["rl"] = hours(
            [
                (n * new, decode),
                (passes * tokens(shared), forward),
                (tokens(shared_grad), _rate(stack, "grad_tokens_per_s")),
            ]
        )
    return out


def cost_table(rates: dict[str, Any]) -> str:
    """The Markdown table of every stack in ``rates`` (``docs/gpu/rates.json``'s layout)."""
    gpus, recipe = int(rates["gpus"]), rates["recipe"]
    lines = [
        f"| stack ({gpus} × {rates.get('gpu', 'GPU')}) | SFT h | probe h | RL h | total h |",
        "|:--|--:|--:|--:|--:|",
    ]
    for name, stack in rates["stacks"].items():
        h = stage_hours(recipe, stack, gpus)
        cells = ["–" if v is None else f"{v[0]:.1f}" + ("" if v[1] == "measured" else " (est.)") for v in h.values()]
        known = [v for v in h.values() if v is not None]
        total = "–" if len(known) < 3 else f"{sum(v[0] for v in known):.1f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {total} |")
    lines.append("")
    lines.append(
        "(est.): at least one rate in the cell is estimated or a goal, not measured. In every cell the recipe's "
        "lengths per sample (prompt, target, completion) are estimates. Every figure's kind and source is in "
        "the rates file; linear scaling over the GPUs is assumed."
    )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m egt.report.cost_model", description=__doc__.split("\n")[0])
    ap.add_argument("rates", nargs="?", default="docs/gpu/rates.json", help="the rates JSON (docs/gpu/rates.json)")
    args = ap.parse_args(argv)
    print(cost_table(json.loads(Path(args.rates).read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
