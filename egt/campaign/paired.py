"""Item-level results of a reproduction sweep: per arm and seed, which bench items the judge got right
(from the eval artifacts' ``predictions.jsonl``), the tables with mean ± 95% CI over seeds and paired
differences against each table's reference row, and Figures 2 and 4 with error bars.

Arms are named as in egt.campaign.verdict (``table3:random``, ``fig4:0.15``, ``sft``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from egt.campaign.power import mean_ci, paired_difference, t_ppf
from egt.campaign.verdict import SHARED
from egt.report.experiments import EXPERIMENTS, cells, entries

log = logging.getLogger(__name__)
# each table's reference row: the paper's method (Table 2: SFT; Figure 4: all the data; online: static)
REFERENCE = {
    "table2": "sft",
    "table3": "table3:entropy",
    "table4": "table4:answer",
    "table5": "table5:low",
    "fig4": "fig4:1.0",
    "online": "online:static",
    "methods": "methods:egt",  # issue 35: every method against EGT
}


def item_correctness(path: str | Path) -> dict[str, int]:
    """{item id: 1 if right else 0} on the official view (a parse failure counts wrong, as the synthetic
    bench scores it)."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("view", "official") == "official":
                out[str(r["id"])] = int(r["pred"] is not None and int(r["pred"]) == int(r["label"]))
    return out


def _predictions(entry: dict[str, Any], artifacts: Path) -> Optional[Path]:
    p = artifacts / "eval" / str(entry.get("key")) / "predictions.jsonl"
    return p if p.is_file() else None


def load_cells(
    jobs: Sequence[dict[str, Any]],
    artifacts: str | Path,
    benchmark: str = "synthetic",
) -> tuple[dict[str, dict[int, np.ndarray]], list[str]]:
    """({arm: {seed: [N] correctness}}, item ids), items aligned over every model (their common ids)."""
    artifacts = Path(artifacts)
    raw: dict[str, dict[int, dict[str, int]]] = {}
    for exp in EXPERIMENTS:
        for value, js in cells(jobs, exp).items():
            for j in js:
                seed = j.get("params", {}).get("rl.seed")
                for model, arm, key in (("rl", f"{exp.name}:{value}", seed), ("sft", "sft", SHARED)):
                    for m in entries(j, model, benchmark):
                        path = _predictions(m, artifacts)
                        if path is None:
                            log.warning("no predictions.jsonl for eval %s (%s)", m.get("key"), j.get("_rel"))
                        elif key not in raw.setdefault(arm, {}):
                            raw[arm][int(key)] = item_correctness(path)
    if not raw:
        return {}, []
    ids = sorted(set.intersection(*(set(v) for per in raw.values() for v in per.values())))
    return {
        arm: {s: np.array([v[i] for i in ids], dtype=np.int8) for s, v in per.items()} for arm, per in raw.items()
    }, ids


def training_sets(jobs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per RL arm, what its jobs trained on, averaged over seeds from job.json's stage summaries: the
    selected samples ``n``, their ``flipped`` and ``ambiguous`` label rates (synthetic world; fractions)
    and the RL ``steps`` (optimizer steps). An online arm's set is its first (the SFT probe's); arms whose
    jobs recorded none are left out. Read beside a table, it says whether a difference can come from a
    cleaner set or only from fewer updates."""
    out: dict[str, dict[str, float]] = {}
    for exp in EXPERIMENTS:
        for value, js in cells(jobs, exp).items():
            sel = [((j.get("stages") or {}).get("select") or {}).get("summary") or {} for j in js]
            rl = [((j.get("stages") or {}).get("rl") or {}).get("summary") or {} for j in js]
            row = {}
            for name, vals in (
                ("n", [d["n_selected"] for d in sel if d.get("n_selected")]),
                # egt.select's flipped_rate / ambiguous_rate are the pool's; the set's is kept / selected
                (
                    "flipped",
                    [
                        d["flipped_kept"] / d["n_selected"]
                        for d in sel
                        if d.get("n_selected") and d.get("flipped_kept") is not None
                    ],
                ),
                (
                    "ambiguous",
                    [
                        d["ambiguous_kept"] / d["n_selected"]
                        for d in sel
                        if d.get("n_selected") and d.get("ambiguous_kept") is not None
                    ],
                ),
                ("steps", [d["optimizer_steps"] for d in rl if d.get("optimizer_steps") is not None]),
            ):
                if vals:
                    row[name] = float(np.mean(vals))
            if row:
                out[f"{exp.name}:{value}"] = row
    return out


def _label(arm: str) -> str:
    return arm.split(":", 1)[-1]


def ci_tables_markdown(
    arms: dict[str, dict[int, np.ndarray]], alpha: float = 0.05, sets: Optional[dict[str, dict[str, float]]] = None
) -> str:
    """Per experiment: Overall mean ± 95% CI over seeds and the paired difference [95% CI] against the
    reference row (same seeds, same items; egt.campaign.power.paired_difference); with ``sets``
    (:func:`training_sets`) also each arm's RL set: samples, flipped / ambiguous labels (%), steps."""
    sets = sets or {}
    out = []
    for exp in EXPERIMENTS:
        rows = [a for a in arms if a.startswith(exp.name + ":")]
        if not rows:
            continue
        ref = REFERENCE.get(exp.name)
        if exp.sft_row and "sft" in arms:
            rows = ["sft"] + rows
        out += [
            f"**{exp.name}** (reference: {_label(ref) if ref else '–'})",
            "",
            "| row | seeds | Overall, mean ± 95% CI | difference vs reference [95% CI] | RL set: samples, "
            "flipped %, ambiguous % | RL steps |",
            "|:--|--:|--:|--:|--:|--:|",
        ]
        for arm in rows:
            per = arms[arm]
            accs = [100 * float(v.mean()) for v in per.values()]
            m, half = mean_ci(accs, alpha)
            if arm == "sft":
                n = len(next(iter(per.values())))
                half = 100 * wilson_half(m / 100, n, alpha)  # one model: the bench's binomial interval
            cell = f"{m:.2f}" + ("" if half is None else f" ± {half:.2f}")
            diff = "reference" if arm == ref else _diff(arms, arm, ref, alpha)
            out.append(
                f"| {_label(arm)} | {len(per) if arm != 'sft' else 1} | {cell} | {diff} | "
                f"{_set_cell(sets.get(arm))} | {_steps_cell(sets.get(arm))} |"
            )
        out.append("")
    return "\n".join(out)


def _set_cell(row: Optional[dict[str, float]]) -> str:
    if not row or "n" not in row:
        return "–"
    rates = ", ".join(f"{100 * row[k]:.1f}" if k in row else "–" for k in ("flipped", "ambiguous"))
    return f"{row['n']:,.0f}, {rates}"


def _steps_cell(row: Optional[dict[str, float]]) -> str:
    return "–" if not row or "steps" not in row else f"{row['steps']:,.0f}"


def _diff(arms: dict[str, dict[int, np.ndarray]], arm: str, ref: Optional[str], alpha: float) -> str:
    if ref is None or ref not in arms or arm == "sft":
        return "–"
    a, b = arms[arm], arms[ref]
    if SHARED in b:
        seeds = sorted(a)
        d = paired_difference(np.stack([a[s] for s in seeds]), b[SHARED][None, :], alpha)
    else:
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            return "–"
        d = paired_difference(np.stack([a[s] for s in seeds]), np.stack([b[s] for s in seeds]), alpha)
    return f"{100 * d.mean:+.2f} [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]"


def wilson_half(p: float, n: int, alpha: float = 0.05) -> float:
    """Half-width of the Wilson score interval of a proportion p over n trials.

    z sqrt(pq/n + z²/(4n²)) / (1 + z²/n); at p = 0.5, n = 100, z = 1.96:
    1.96 sqrt(0.0025 + 0.000096) / 1.0384 = 1.96 * 0.05095 / 1.0384 = 0.0962.
    >>> round(wilson_half(0.5, 100), 4)
    0.0962
    """
    z = t_ppf(1 - alpha / 2, 1e8)
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def fig4_ci(arms: dict[str, dict[int, np.ndarray]], path: str | Path, alpha: float = 0.05) -> Optional[Path]:
    """Figure 4 with 95% CIs over seeds (the SFT point: the bench's binomial interval)."""
    from egt.report.figures import plot_fig4

    points = []
    for arm, per in arms.items():
        if arm.startswith("fig4:"):
            m, half = mean_ci([100 * float(v.mean()) for v in per.values()], alpha)
            points.append((100 * float(_label(arm)), m, half))
    if not points:
        return None
    sft = None
    if "sft" in arms:
        v = arms["sft"][SHARED]
        sft = (100 * float(v.mean()), 100 * wilson_half(float(v.mean()), len(v), alpha))
    return plot_fig4(
        points, path, sft, ylabel="overall accuracy (%)", title="Figure 4: data scale (mean ± 95% CI over seeds)"
    )


def fig2_ci(table: Any, path: str | Path, bins: int = 10, alpha: float = 0.05) -> Path:
    """Figure 2 with Wilson 95% intervals: accuracy per equal-count entropy bin."""
    from egt.probe.figure2 import entropy_accuracy, plot_fig2

    df, rho = entropy_accuracy(table, bins)
    return plot_fig2(df, path, rho, half_width=lambda a, n: wilson_half(a, n, alpha))
