"""Paper Tables 2–5 and Figure 4 from a sweep's ``job.json`` files (egt.sweep).

A table is defined by the override its sweep varies (``+ablation=…`` for Table 2,
``selection=…`` for Table 3, ``entropy=…`` for 4, ``selection.band=…`` for 5,
``selection.fraction=…`` for Figure 4), so the explicit form
``python train.py -m entropy=answer,sentence,mix`` lands in Table 4 as well. A job's cell is
its value of that override; everything else that differs between the jobs of a cell
(``rl.seed``) is a repeat: a cell is the mean ± sd of the RL model's metrics over its
jobs, counted once per distinct evaluation. Table 2's SFT row (and Figure 4's 0% point) is
the SFT model's evaluation that every job shares. Columns are the benchmark's own
(Reasoning / Hallu. / General / Overall …). Failed jobs are listed under the table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from egt.report.tables import Column, Table, build_table
from egt.sweep import override_value

SEED_KEYS = ("rl.seed", "seed", "seeds", "selection.seed", "curriculum.seed")


@dataclass(frozen=True)
class Experiment:
    name: str
    key: str  # the override the sweep varies
    rows: tuple[tuple[str, str], ...]  # (override value, row label) in the paper's order; others appended
    caption: str
    sft_row: Optional[str] = None  # label of a leading row holding the SFT model


EXPERIMENTS = (
    Experiment(
        "table2",
        "ablation",
        (("full_rl", "+ Full RL"), ("selection", "+ Selection"), ("selection_sort", "+ Selection & Sort")),
        "Table 2: training strategies (SFT, RL on all data, on the lowest-entropy selection, "
        "and on the selection in ascending entropy order).",
        sft_row="SFT",
    ),
    Experiment(
        "table3",
        "selection",
        (("random", "Random"), ("accuracy", "Accuracy"), ("entropy", "Entropy")),
        "Table 3: data selection strategies at equal size.",
    ),
    Experiment(
        "table4",
        "entropy",
        (("sentence", "Sentence"), ("answer", "Answer"), ("mix", "Mix")),
        "Table 4: entropy score used to select the lowest-scored samples.",
    ),
    Experiment(
        "table5",
        "selection.band",
        (("low", "Low-Entropy"), ("mid", "Mid-Entropy"), ("high", "High-Entropy")),
        "Table 5: equal-size subsets at different answer-entropy levels.",
    ),
    Experiment(
        "online",
        "online",
        (("static", "Static (EGT)"), ("order", "Online order"), ("selection", "Online selection")),
        "Online entropy curriculum (beyond the paper): the SFT model's order for every epoch, the order "
        "re-probed by the current policy every epoch, and the selection re-made from those re-probes; "
        "same RL budget.",
        sft_row="SFT",
    ),
    Experiment(
        "methods",
        "method",
        (
            ("full_rl", "Full RL"),
            ("random", "Random"),
            ("accuracy", "Accuracy"),
            ("egt", "EGT (answer entropy)"),
            ("egt_sentence_fallback", "EGT (sentence_fallback)"),
            ("pass_rate", "Pass-rate band"),
            ("pass_rate_weighted", "Pass-rate band + difficulty weights"),
            ("difficulty_prior", "Difficulty prior (two stages, hints)"),
            ("zero_variance", "Zero-variance filter, all data"),
            ("bis", "BIS analogue"),
            ("confident_learning", "Confident learning"),
            ("unifiedreward_think", "UnifiedReward-Think (RFT + incorrect)"),
            ("egt_zero_variance", "EGT + zero-variance filter"),
        ),
        "Data-efficient training methods (issue 35; conf/method): the same SFT judge, RL pool and RL budget "
        "in optimizer steps.",
        sft_row="SFT",
    ),
    Experiment(
        "fig4",
        "selection.fraction",
        (),
        "Figure 4: accuracy against the fraction of the lowest-entropy data used for RL (0% = the SFT model).",
        sft_row="0% (SFT)",
    ),
)


def _fraction_label(value: str) -> str:
    return f"{float(value) * 100:g}%"


def entries(job: dict[str, Any], model: str, benchmark: str) -> list[dict[str, Any]]:
    return [m for m in job.get("metrics") or [] if m["model"] == model and m["benchmark"] == benchmark]


def benchmarks(jobs: Sequence[dict[str, Any]]) -> list[str]:
    from egt.report.table1 import BENCH_ORDER

    present = {m["benchmark"] for j in jobs for m in j.get("metrics") or []}
    return [b for b in BENCH_ORDER if b in present] + sorted(present - set(BENCH_ORDER))


def cells(jobs: Sequence[dict[str, Any]], exp: Experiment) -> dict[str, list[dict[str, Any]]]:
    """{override value: completed jobs}, in the experiment's row order (fractions numerically)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        v = override_value(j, exp.key)
        if v is not None and j["status"] == "completed":
            by[v].append(j)
    known = [v for v, _ in exp.rows if v in by]
    rest = sorted(set(by) - set(known), key=lambda v: (float(v) if _is_number(v) else float("inf"), v))
    return {v: by[v] for v in known + rest}


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def unique_metrics(jobs: Sequence[dict[str, Any]], model: str, benchmark: str) -> list[dict[str, Any]]:
    """The metrics of ``model`` on ``benchmark`` over the jobs, once per evaluation key."""
    seen, out = set(), []
    for j in jobs:
        for m in entries(j, model, benchmark):
            if m.get("key") not in seen:
                seen.add(m.get("key"))
                out.append(m["metrics"])
    return out


def confounders(groups: dict[str, list[dict[str, Any]]], exp: Experiment) -> list[str]:
    """Override keys (other than the table's and seeds) whose values differ inside one cell."""
    bad = set()
    for jobs in groups.values():
        keys = {o.lstrip("+~").partition("=")[0] for j in jobs for o in j["overrides"]}
        for k in keys - {exp.key, *SEED_KEYS}:
            if len({override_value(j, k) for j in jobs}) > 1:
                bad.add(k)
    return sorted(bad)


def experiment_table(jobs: Sequence[dict[str, Any]], exp: Experiment, benchmark: str) -> Optional[Table]:
    """The experiment's table on one benchmark, or None if no completed job ran it."""
    groups = cells(jobs, exp)
    if not groups:
        return None
    spec = next((m.get("columns") for js in groups.values() for j in js for m in entries(j, "rl", benchmark)), None)
    cols = [Column(k, h) for k, h in (spec or [["overall", "Overall"]])]
    labels = dict(exp.rows)
    rows: list[tuple[str, list[dict[str, Any]]]] = []
    if exp.sft_row:
        rows.append((exp.sft_row, unique_metrics([j for js in groups.values() for j in js], "sft", benchmark)))
    for value, js in groups.items():
        label = (
            _fraction_label(value)
            if exp.key == "selection.fraction" and _is_number(value)
            else labels.get(value, value)
        )
        rows.append((label, unique_metrics(js, "rl", benchmark)))
    from egt.report.table1 import SHORT

    table = build_table(
        rows,
        cols,
        row_header="Method",
        caption=f"{exp.caption} {SHORT.get(benchmark, benchmark)}, accuracy (%), mean ± sd over seeds.",
    )
    n = {label: len(runs) for label, runs in rows}
    table.notes.append("runs per row: " + ", ".join(f"{k} {v}" for k, v in n.items()))
    bad = confounders(groups, exp)
    if bad:
        table.notes.append(f"warning: {', '.join(bad)} also differ between the jobs of a row (averaged over)")
    failed = [j for j in jobs if j["status"] != "completed" and override_value(j, exp.key) is not None]
    for j in failed:
        table.notes.append(f"FAILED job {j.get('_rel', j['_dir'])} ({' '.join(j['overrides'])}): {j.get('error')}")
    return table


def experiment_tables(jobs: Sequence[dict[str, Any]]) -> list[tuple[str, Table]]:
    """(file stem, table) for every experiment the jobs ran, per benchmark."""
    benches = benchmarks(jobs)
    out = []
    for exp in EXPERIMENTS:
        for bench in benches:
            t = experiment_table(jobs, exp, bench)
            if t is not None:
                out.append((exp.name if len(benches) == 1 else f"{exp.name}_{bench}", t))
    return out


def failed_jobs(jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [j for j in jobs if j["status"] != "completed"]
