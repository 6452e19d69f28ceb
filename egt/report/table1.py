"""Paper Table 1 (models × benchmarks, average, gain over a baseline row) and per-benchmark tables.

Table 1 reports each benchmark's *overall* accuracy (the paper's caption: "we report the
overall accuracy for each benchmark"; for VL-RewardBench that is the micro average, not
the macro headline). Rows are models (label from metrics.json; a label shared by
different models gets the model's key appended; Voting@K / sampled runs are their own rows).
Beside each official number (the authors' response order), runs with ``eval.order=both``
add the position-debiased accuracy and the position consistency; a position-biased judge's
official number is marked † (footnote), as the eval stage warned in its log.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Optional, Sequence

from egt.benchmarks import metrics as M
from egt.report.results import Result
from egt.report.tables import Column, Table, build_table

log = logging.getLogger(__name__)

BENCH_ORDER = ("vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench", "synthetic")
SHORT = {
    "vl_rewardbench": "VL-Reward",
    "multimodal_rewardbench": "Multimodal",
    "mm_rlhf_rewardbench": "MM-RLHF",
    "synthetic": "Synthetic",
}
# Paper Table 1, reported numbers (overall accuracy, %), for --paper-rows
PAPER_ROWS: tuple[tuple[str, dict[str, float]], ...] = (
    ("GPT-4o (2024-08-06)", {"vl_rewardbench": 65.80, "multimodal_rewardbench": 70.80, "mm_rlhf_rewardbench": 58.23}),
    ("Claude-3.7-Sonnet", {"vl_rewardbench": 66.31, "multimodal_rewardbench": 71.90, "mm_rlhf_rewardbench": 82.35}),
    ("MM-RLHF-Reward (7B)", {"vl_rewardbench": 50.15, "multimodal_rewardbench": 67.10, "mm_rlhf_rewardbench": 82.00}),
    ("IXC-2.5-Reward (7B)", {"vl_rewardbench": 65.80, "multimodal_rewardbench": 66.60, "mm_rlhf_rewardbench": 71.18}),
    ("R1-Reward (7B)", {"vl_rewardbench": 72.89, "multimodal_rewardbench": 82.20, "mm_rlhf_rewardbench": 80.59}),
    ("EGT (paper, 7B)", {"vl_rewardbench": 77.15, "multimodal_rewardbench": 84.30, "mm_rlhf_rewardbench": 85.88}),
)
DIAGNOSTICS = (
    ("parse_failure_rate", "Parse fail.", "min"),
    ("strict/overall", "Strict", "max"),
    ("format_ok", "Format ok", "max"),
    ("order/swapped/overall", "Swapped", "max"),
    ("order/debiased/overall", "Debiased", "max"),
    ("order/chosen_first/accuracy", "Chosen 1st", None),
    ("order/chosen_second/accuracy", "Chosen 2nd", None),
    ("order/first_minus_second", "1st − 2nd", None),
    ("order/position_consistency", "Consistency", "max"),
    ("single/overall", "Single", "max"),
)


def benchmarks_of(results: Sequence[Result]) -> list[str]:
    present = {r.benchmark for r in results}
    return [b for b in BENCH_ORDER if b in present] + sorted(present - set(BENCH_ORDER))


def row_labels(results: Sequence[Result]) -> dict[int, str]:
    """Row label per result: model label (+ what tells it apart if the label is ambiguous) (+ variant).

    Where models share a label (a sweep's RL judges), each gets the overrides of its sweep job that the
    others' jobs do not share (``rl [method=egt rl.seed=0]``); where those do not tell the models apart
    (no job, or the same overrides), the model key."""
    ids_per_label: dict[str, set[str]] = defaultdict(set)
    for r in results:
        ids_per_label[r.model_label].add(r.model_id)
    by_job = _job_tags(results, ids_per_label)
    out = {}
    for i, r in enumerate(results):
        label = r.model_label
        if len(ids_per_label[label]) > 1:
            ident = r.data["model"].get("identity") or {}
            tag = by_job.get(r.model_label, {}).get(r.model_id)
            label += f" [{tag or ident.get('key') or str(r.data['model'].get('path', ''))[-24:]}]"
        if r.variant:
            label += f" ({r.variant})"
        out[i] = label
    return out


def _job_tags(results: Sequence[Result], ids_per_label: dict[str, set[str]]) -> dict[str, dict[str, str]]:
    """{label: {model id: the job's overrides its label's other jobs do not all share}} for the ambiguous
    labels whose models each lie in a sweep job with overrides that tell every one apart."""
    out: dict[str, dict[str, str]] = {}
    for label, ids in ids_per_label.items():
        if len(ids) < 2:
            continue
        jobs: dict[str, tuple[str, ...]] = {}
        for r in results:
            if r.model_label == label and r.job_overrides is not None:
                jobs.setdefault(r.model_id, r.job_overrides)
        if set(jobs) != ids:
            continue
        common = set.intersection(*(set(o) for o in jobs.values()))
        tags = {mid: " ".join(o for o in overrides if o not in common) for mid, overrides in jobs.items()}
        if all(tags.values()) and len(set(tags.values())) == len(tags):
            out[label] = tags
    return out


def grouped(results: Sequence[Result]) -> dict[str, dict[str, Result]]:
    """{row label: {benchmark: result}}; for duplicates the most recently finished one wins."""
    labels = row_labels(results)
    rows: dict[str, dict[str, Result]] = defaultdict(dict)
    for i, r in enumerate(results):
        old = rows[labels[i]].get(r.benchmark)
        if old is not None:
            log.warning(
                "two results for %s on %s (%s, %s): keeping the newer", labels[i], r.benchmark, old.path, r.path
            )
            if (old.data.get("finished_at") or 0) > (r.data.get("finished_at") or 0):
                continue
        rows[labels[i]][r.benchmark] = r
    return dict(rows)


def bias_limits(
    result: Result, min_consistency: Optional[float] = None, max_gap: Optional[float] = None
) -> dict[str, float]:
    """The position-bias limits for ``result``: the given ones, else its run's ``eval.position_bias``,
    else egt's defaults (egt.benchmarks.metrics)."""
    own = (result.data.get("eval_config") or {}).get("position_bias") or {}
    return {
        "min_consistency": min_consistency
        if min_consistency is not None
        else own.get("min_consistency", M.MIN_CONSISTENCY),
        "max_gap": max_gap if max_gap is not None else own.get("max_gap", M.MAX_ORDER_GAP),
    }


def _bias_note(limits: set[tuple[float, float]]) -> str:
    which = (
        f"position consistency < {100 * next(iter(limits))[0]:.0f}% or accuracy with the better response "
        f"first vs second more than {100 * next(iter(limits))[1]:.0f} points apart"
        if len(limits) == 1
        else "position consistency or first-vs-second gap beyond its run's eval.position_bias"
    )
    return (
        f"† position-biased judge on this benchmark ({which}): its official number depends on the order "
        "the authors show the responses in; the debiased column is the mean over both orders."
    )


def table1(
    results: Sequence[Result],
    baseline: Optional[str] = None,
    paper_rows: bool = False,
    metric: str = "overall",
    min_consistency: Optional[float] = None,
    max_gap: Optional[float] = None,
) -> Table:
    """Models × benchmarks (``metric``, default overall accuracy, official: the authors' order), Avg. over
    the row's benchmarks, Avg. Gain over ``baseline`` (a row label; default: ``sft`` if there, else the
    first row). A benchmark some row evaluated with ``eval.order=both`` also gets its position-debiased
    ``metric`` (deb., mean over both orders) and position consistency (cons.) columns, and Avg. its
    debiased mean; an official number of a position-biased judge (:func:`egt.benchmarks.metrics.position_bias`
    with :func:`bias_limits`) is marked † and logged."""
    rows = grouped(results)
    benches = benchmarks_of(results)
    if paper_rows:
        benches = list(dict.fromkeys(list(BENCH_ORDER[:3]) + benches))
    flat: list[tuple[str, dict[str, Any], Optional[str]]] = []
    marked: dict[str, set[str]] = defaultdict(set)  # row label -> benchmarks whose official cell gets †
    limits_used: set[tuple[float, float]] = set()
    section = "Paper (reported)" if paper_rows else None
    if paper_rows:
        flat += [(label, {b: v / 100 for b, v in vals.items()}, section) for label, vals in PAPER_ROWS]
    for label, by_bench in rows.items():
        m: dict[str, Any] = {}
        for b, r in by_bench.items():
            m[b] = r.metrics.get(metric)
            m[f"{b}|deb"] = r.metrics.get(f"order/debiased/{metric}")
            m[f"{b}|cons"] = r.metrics.get("order/position_consistency")
            limits = bias_limits(r, min_consistency, max_gap)
            reasons = M.position_bias(r.metrics, **limits)
            if reasons:
                marked[label].add(b)
                limits_used.add((limits["min_consistency"], limits["max_gap"]))
                log.warning("Table 1: %s on %s is position-biased (%s)", label, b, "; ".join(reasons))
        flat.append((label, m, "egt" if paper_rows else None))
    both = [b for b in benches if any(m.get(f"{b}|cons") is not None for _, m, _ in flat)]  # order=both ran
    # Avg. over the public benchmarks when there are any (the synthetic bench is not comparable), and only
    # for rows that have all of them, as in the paper
    avg_over = [b for b in benches if b != "synthetic"] or benches
    for _, m, _ in flat:
        for avg, suffix in (("avg", ""), ("avg|deb", "|deb")):
            vals = [m.get(b + suffix) for b in avg_over]
            m[avg] = sum(vals) / len(vals) if vals and None not in vals else None
    labels = [f[0] for f in flat]
    if baseline is None:
        baseline = "sft" if "sft" in labels else (labels[0] if labels else None)
    elif baseline not in labels:
        raise KeyError(f"--baseline {baseline!r} is not a row; rows: {labels}")
    base = next((m["avg"] for lab, m, _ in flat if lab == baseline), None)
    for label, m, _ in flat:
        m["gain"] = None if label == baseline or base is None or m["avg"] is None else m["avg"] - base
    cols = _table1_columns(benches, both, any(m["avg|deb"] is not None for _, m, _ in flat))
    caption = f"Table 1: {metric} accuracy (%) per benchmark"
    if both:
        caption += (
            ", official (as the benchmark's authors order the responses) and position-debiased (deb., "
            "the mean over both orders) with position consistency (cons.)"
        )
    table = build_table([(lab, [m], s) for lab, m, s in flat], cols, caption=f"{caption}; Avg. Gain over {baseline}.")
    for row in table.rows:
        for j, col in enumerate(cols):
            if col.key in marked[row.label] and row.cells[j].mean is not None:
                row.cells[j].mark = "†"
    table.notes.append(f"Avg. over {', '.join(SHORT.get(b, b) for b in avg_over)}; a row missing one has none.")
    if both:
        table.notes.append(
            "cons.: the fraction of pairs whose verdict picks the same response in both orders; "
            "– where a run used eval.order=official."
        )
    if limits_used:
        table.notes.append(_bias_note(limits_used))
    return table


def _table1_columns(benches: Sequence[str], both: Sequence[str], avg_debiased: bool) -> list[Column]:
    cols = []
    for b in benches:
        name = SHORT.get(b, b)
        if b not in both:
            cols.append(Column(b, name))
            continue
        cols += [
            Column(b, name, group=name, short="Off."),
            Column(f"{b}|deb", f"{name} deb.", group=name, short="Deb."),
            Column(f"{b}|cons", f"{name} cons.", group=name, short="Cons."),
        ]
    if avg_debiased:
        cols += [
            Column("avg", "Avg.", group="Avg.", short="Off."),
            Column("avg|deb", "Avg. deb.", group="Avg.", short="Deb."),
        ]
    else:
        cols.append(Column("avg", "Avg."))
    return cols + [Column("gain", "Avg. Gain", best=None, delta=True)]


def category_table(results: Sequence[Result], benchmark: str) -> Table:
    """One benchmark's official per-category metrics, columns as the benchmark declares them."""
    rows = grouped(results)
    mine = {label: by[benchmark] for label, by in rows.items() if benchmark in by}
    spec = next(iter(mine.values())).data["benchmark"].get("columns") or [["overall", "Overall"]]
    cols = [Column(k, h) for k, h in spec]
    return build_table(
        [(lab, [r.metrics]) for lab, r in mine.items()],
        cols,
        caption=f"{SHORT.get(benchmark, benchmark)}: official metrics (%) per category.",
    )


def diagnostics_table(results: Sequence[Result], benchmark: str) -> Table:
    """egt's extras: parse failures, strict accuracy, order=both and voting columns that any row has."""
    mine = {label: by[benchmark] for label, by in grouped(results).items() if benchmark in by}
    cols = [Column(k, h, best=b) for k, h, b in DIAGNOSTICS if any(r.metrics.get(k) is not None for r in mine.values())]
    return build_table(
        [(lab, [r.metrics]) for lab, r in mine.items()],
        cols,
        caption=f"{SHORT.get(benchmark, benchmark)}: parse failures and robustness (%).",
    )
