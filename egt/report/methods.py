"""The methods comparison's cost table (issue 35): what each data-efficient training method kept and spent.

Rows are the values of the ``method`` override a sweep varies (``experiment=methods`` /
``methods_quick``: ``conf/method/<name>.yaml``); the accuracy table beside it is
:data:`egt.report.experiments.EXPERIMENTS`'s ``methods`` entry. Per row, the mean over the row's jobs
(± sd where several seeds ran) of, from each job's ``job.json`` stage summaries:

- **kept**: samples RL trains on (select ``n_selected``) and the pool (``n_pool``);
- **flipped / ambiguous kept**: the share of the kept samples whose label the synthetic world flipped, or
  whose pair it made ambiguous (select ``flipped_kept`` / ``n_selected``), beside the pool's rate
  (``flipped_rate``); only in the synthetic world (elsewhere "–");
- **probe outputs / probe s**: the judge's outputs the selection read (n × probed samples) and the probe
  stage's seconds when it was computed (select ``probe_draws``, ``probe_seconds``);
- **rft kept / rft s**: trajectories rejection sampling kept and its fine-tuning seconds (the ``rft``
  stage, UnifiedReward-Think's recipe; "–" for the others);
- **RL prompts / RL s**: prompts rolled out (refills of an online filter included: RL ``prompts_generated``,
  else optimizer-step rollouts × batch) and RL's training seconds (``train_seconds``);
- **method s**: probe + rft + RL seconds: what the method costs beyond the SFT judge every method shares (no
  probe for ``selection=all``, which keeps every sample whatever the probe says).

Seconds are **CPU seconds** (process time, all of a process's threads: ``probe_cpu_seconds``,
``train_cpu_seconds``), which do not grow when other work shares the machine; a summary written before
egt recorded them gives its wall seconds instead. They are those of the run that computed the artifact (a
reused artifact keeps its own), on the machine that ran it: compare rows of one sweep, not across machines.
A killed and resumed stage counts every attempt's seconds that its checkpoints or shards kept
(``egt.training.recipe.FitClock``, ``egt.probe.probe.shard_seconds``); a summary whose
``fit_seconds_complete`` / ``probe_seconds_complete`` is false (resumed from a checkpoint or shard written
before egt kept them) counts from there on only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.experimental.callback import Callback as HydraCallback

from egt.report.experiments import EXPERIMENTS, Experiment, cells
from egt.sweep import override_value
from egt.utils.atomic import write_text_atomic
from egt.report.tables import Column, Table, build_table

__all__ = [
    "COST_COLUMNS",
    "cost_row",
    "partial_seconds",
    "cost_table",
    "cost_points",
    "method_points",
    "noise_correlation",
    "write_cost_figure",
    "write_noise_figure",
    "quick_table",
    "MethodsTableCallback",
]

COST_COLUMNS = (
    Column("n_selected", "Kept", scale=1, digits=0, best=None),
    Column("kept_fraction", "Kept %", digits=1, best=None),
    Column("flipped_kept_rate", "Flipped kept %", digits=1, best="min"),
    Column("flipped_rate", "Flipped pool %", digits=1, best=None),
    Column("ambiguous_kept_rate", "Ambiguous kept %", digits=1, best="min"),
    Column("ambiguous_rate", "Ambiguous pool %", digits=1, best=None),
    Column("probe_draws", "Probe outputs", scale=1, digits=0, best=None),
    Column("probe_seconds", "Probe s", scale=1, digits=0, best=None),
    Column("rft_kept", "RFT kept", scale=1, digits=0, best=None),
    Column("rft_seconds", "RFT s", scale=1, digits=0, best=None),
    Column("rl_prompts", "RL prompts", scale=1, digits=0, best=None),
    Column("rl_seconds", "RL s", scale=1, digits=0, best=None),
    Column("method_seconds", "Method s", scale=1, digits=0, best="min"),
)


def _summary(job: dict[str, Any], stage: str) -> dict[str, Any]:
    return ((job.get("stages") or {}).get(stage) or {}).get("summary") or {}


def _ratio(a: Any, b: Any) -> Optional[float]:
    return None if a is None or not b else float(a) / float(b)


def _cpu(summary: dict[str, Any], prefix: str) -> Optional[float]:
    """``<prefix>_cpu_seconds``, else (a summary written before egt recorded CPU time) ``<prefix>_seconds``."""
    value = summary.get(f"{prefix}_cpu_seconds")
    return summary.get(f"{prefix}_seconds") if value is None else value


def partial_seconds(job: dict[str, Any]) -> list[str]:
    """The stages whose seconds in :func:`cost_row` count from a resume on only: an rft / rl fit resumed from a
    checkpoint without egt's clock (``fit_seconds_complete`` false, or absent from a resumed summary written
    before egt kept it: :class:`egt.training.recipe.FitClock`), a probe resumed from shards without their
    seconds (the select summary's ``probe_seconds_complete`` false). A probe summary from before egt kept the
    flag says nothing: not listed.

    >>> partial_seconds({"stages": {"rl": {"summary": {"resumed": True}},
    ...                             "rft": {"summary": {"resumed": True, "fit_seconds_complete": True}}}})
    ['rl']
    """
    sel = _summary(job, "select")
    out = ["probe"] if sel.get("method") != "all" and sel.get("probe_seconds_complete") is False else []
    for stage in ("rft", "rl"):
        s = _summary(job, stage)
        if s.get("resumed") and s.get("fit_seconds_complete") is not True:
            out.append(stage)
    return out


def cost_row(job: dict[str, Any]) -> dict[str, Optional[float]]:
    """One job's cost and kept-set figures (the keys of :data:`COST_COLUMNS`; None where not known).

    >>> job = {"stages": {"select": {"summary": {"n_selected": 20, "n_pool": 100, "flipped_kept": 2,
    ...        "flipped_rate": 0.1, "probe_draws": 800, "probe_seconds": 30.0}},
    ...        "rl": {"summary": {"prompts_generated": 64, "train_seconds": 12.5}}}}
    >>> r = cost_row(job)
    >>> r["kept_fraction"], r["flipped_kept_rate"], r["rl_prompts"], r["method_seconds"]
    (0.2, 0.1, 64.0, 42.5)
    """
    sel, rl, rft = _summary(job, "select"), _summary(job, "rl"), _summary(job, "rft")
    kept = sel.get("n_selected")
    prompts = rl.get("prompts_generated")
    if prompts is None and rl.get("steps") is not None and rl.get("batch_size") is not None:
        prompts = rl["steps"] * rl["batch_size"]
    probe_s, rft_s, rl_s = _cpu(sel, "probe"), _cpu(rft, "train"), _cpu(rl, "train")
    # a selection that ranks nothing by the probe (full_rl: every sample) does not need it: its probe is no cost
    seconds = [None if sel.get("method") == "all" else probe_s, rft_s, rl_s]
    known = [float(s) for s in seconds if s is not None]
    return {
        "n_selected": None if kept is None else float(kept),
        "kept_fraction": _ratio(kept, sel.get("n_pool")),
        "flipped_kept_rate": _ratio(sel.get("flipped_kept"), kept),
        "flipped_rate": sel.get("flipped_rate"),
        "ambiguous_kept_rate": _ratio(sel.get("ambiguous_kept"), kept),
        "ambiguous_rate": sel.get("ambiguous_rate"),
        "probe_draws": sel.get("probe_draws"),
        "probe_seconds": probe_s,
        "rft_kept": rft.get("kept"),
        "rft_seconds": rft_s,
        "rl_prompts": None if prompts is None else float(prompts),
        "rl_seconds": rl_s,
        "method_seconds": sum(known) if known else None,
    }


def methods_experiment() -> Experiment:
    return next(e for e in EXPERIMENTS if e.name == "methods")


def cost_table(jobs: Sequence[dict[str, Any]], exp: Optional[Experiment] = None) -> Optional[Table]:
    """The cost table of the jobs that vary ``method`` (None when none did)."""
    exp = exp or methods_experiment()
    groups = cells(jobs, exp)
    if not groups:
        return None
    labels = dict(exp.rows)
    rows = [(labels.get(v, v), [cost_row(j) for j in js]) for v, js in groups.items()]
    table = build_table(
        rows,
        COST_COLUMNS,
        row_header="Method",
        caption="Methods: what each kept and what it cost beyond the shared SFT judge (CPU seconds on the "
        "machine that computed each artifact; mean ± sd over seeds).",
    )
    table.notes.append(
        "Flipped / ambiguous: labels the synthetic world flipped or pairs it made ambiguous, as a share of the "
        "kept samples and of the pool. Method s = probe + rft + RL CPU seconds; a method that keeps every sample "
        "(selection=all: Full RL, the zero-variance filter on all data) reads no probe, so the probe seconds in "
        "its row (the sweep's shared probe) are not in its method s."
    )
    partial = [
        f"{label} seed {override_value(j, 'rl.seed')} ({', '.join(stages)})"
        for label, js in ((labels.get(v, v), js) for v, js in groups.items())
        for j in js
        if (stages := partial_seconds(j))
    ]
    if partial:
        table.notes.append(
            "Seconds that count from a resume on only (the stage resumed from a checkpoint or probe shards written "
            f"before egt kept their seconds; the killed attempts' are missing): {'; '.join(partial)}."
        )
    noise = noise_correlation(jobs)
    if noise is not None:
        rho, lo, hi, n = noise
        table.notes.append(
            f"Across the {n} methods (their means over seeds), Spearman ρ between the flipped labels kept and the "
            f"synthetic bench's Overall: {rho:+.2f} (95% CI [{lo:+.2f}, {hi:+.2f}], Fisher z). Descriptive: the "
            "methods differ in more than the labels they keep (methods_noise.png)."
        )
    return table


def noise_correlation(
    jobs: Sequence[dict[str, Any]], benchmark: str = "synthetic"
) -> Optional[tuple[float, float, float, int]]:
    """(ρ, CI low, CI high, n methods): Spearman's ρ over the methods between the mean share of flipped
    labels among the samples each kept and its mean Overall on ``benchmark`` (:func:`method_points`), with
    a Fisher-z 95% CI (:func:`egt.campaign.power.spearman_ci`); None under 4 methods (no CI) or when
    undefined (a constant column)."""
    import numpy as np

    from egt.campaign.power import spearman_ci
    from egt.probe.figure2 import spearman

    pts = method_points(jobs, benchmark, "flipped_kept_rate")
    if len(pts) < 4:
        return None
    rho = spearman(np.array([p[1] for p in pts]), np.array([p[3] for p in pts]))
    if rho is None:
        return None
    lo, hi = spearman_ci(rho, len(pts))
    return rho, lo, hi, len(pts)


def method_points(
    jobs: Sequence[dict[str, Any]], benchmark: str, x: str = "method_seconds", metric: str = "overall"
) -> list[tuple[str, float, Optional[float], float, Optional[float]]]:
    """Per method row: (label, mean of :func:`cost_row`'s ``x``, its sd, accuracy % mean, sd) over the row's
    jobs; rows without either number are left out. A rate ``x`` (``*_rate``) is given in %."""
    from egt.report.experiments import unique_metrics
    from egt.report.tables import make_cell

    exp = methods_experiment()
    labels = dict(exp.rows)
    scale = 100.0 if x.endswith("_rate") else 1.0
    out = []
    for value, js in cells(jobs, exp).items():
        xs = make_cell([None if (v := cost_row(j)[x]) is None else scale * v for j in js])
        acc = make_cell([m.get(metric) for m in unique_metrics(js, "rl", benchmark)])
        if xs.mean is not None and acc.mean is not None:
            out.append(
                (labels.get(value, value), xs.mean, xs.sd, 100 * acc.mean, None if acc.sd is None else 100 * acc.sd)
            )
    return out


def cost_points(
    jobs: Sequence[dict[str, Any]], benchmark: str, metric: str = "overall"
) -> list[tuple[str, float, Optional[float], float, Optional[float]]]:
    """Per method row: (label, method seconds mean, sd, accuracy % mean, sd) over its jobs; rows without
    either number are left out."""
    return method_points(jobs, benchmark, "method_seconds", metric)


def _pool_rate(jobs: Sequence[dict[str, Any]], key: str) -> Optional[float]:
    rates = {cost_row(j)[key] for j in jobs} - {None}
    return 100 * rates.pop() if len(rates) == 1 else None  # one pool: one rate


def _write_method_figures(jobs: Sequence[dict[str, Any]], out: Path, x: str, stem: str, xlabel: str) -> list[Path]:
    """One scatter per benchmark: each method's accuracy (mean ± sd over seeds) against :func:`cost_row`'s
    ``x`` (mean ± sd), the SFT judge as a horizontal line; for a kept-label rate, the pool's as a vertical one."""
    from egt.report.experiments import benchmarks, unique_metrics
    from egt.report.table1 import SHORT
    from egt.report.tables import make_cell

    written = []
    benches = benchmarks(jobs)
    grouped = [j for js in cells(jobs, methods_experiment()).values() for j in js]
    for bench in benches:
        points = method_points(jobs, bench, x)
        if not points:
            continue
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for k, (label, v, v_sd, a, a_sd) in enumerate(points):  # 10 colours, then the next marker: no two alike
            marker = "osD^v"[(k // 10) % 5]
            ax.errorbar(
                [v], [a], xerr=[v_sd or 0.0], yerr=[a_sd or 0.0], fmt=marker, color=f"C{k % 10}", capsize=3, label=label
            )
        sft = make_cell([m.get("overall") for m in unique_metrics(grouped, "sft", bench)])
        if sft.mean is not None:
            ax.axhline(100 * sft.mean, color="grey", linestyle="--", linewidth=1, label="SFT judge")
        pool_key = {"flipped_kept_rate": "flipped_rate", "ambiguous_kept_rate": "ambiguous_rate"}.get(x)
        pool = _pool_rate(grouped, pool_key) if pool_key else None
        if pool is not None:
            ax.axvline(pool, color="grey", linestyle=":", linewidth=1, label="the pool")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{SHORT.get(bench, bench)} overall accuracy (%)")
        ax.legend(fontsize=6, loc="best")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / (f"{stem}.png" if len(benches) == 1 else f"{stem}_{bench}.png")
        fig.savefig(path, dpi=150)
        plt.close(fig)
        written.append(path)
    return written


def write_cost_figure(jobs: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """``methods_cost.png`` (one per benchmark when several): each method's accuracy (mean ± sd over seeds)
    against its seconds beyond the shared SFT judge (mean ± sd), the SFT judge as a horizontal line."""
    return _write_method_figures(
        jobs, out, "method_seconds", "methods_cost", "method CPU seconds beyond the SFT judge (probe + rft + RL)"
    )


def write_noise_figure(jobs: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """``methods_noise.png`` (synthetic world only: elsewhere no label is known to be flipped): each method's
    accuracy against the share of flipped labels among the samples it kept (%, mean ± sd over seeds), the
    pool's share as a vertical line: whether a method's standing follows the label noise it removes."""
    return _write_method_figures(
        jobs, out, "flipped_kept_rate", "methods_noise", "flipped labels among the kept samples (%)"
    )


QUICK_SECONDS = (
    "method CPU s: probe + rft + RL CPU seconds (all of a process's threads) beyond the SFT judge every method "
    "shares; Full RL and the zero-variance filter on all data read no probe."
)
QUICK_NOTE = (
    "One seed on the demo judge: illustrative, not a comparison (differences of a few points are within "
    "this bench's seed-to-seed noise). The protocol's verdicts, with 6 seeds and confidence intervals: "
    "docs/reproduction/methods-v1.md (run methods-v1 of docs/methods/protocol.md; rerun it with "
    "python -m egt.reproduce --protocol docs/methods/protocol.md)."
)


def quick_table(jobs: Sequence[dict[str, Any]], benchmark: str = "synthetic") -> str:
    """``experiment=methods_quick``'s closing table (Markdown): per method, samples kept, flipped labels kept
    against the pool, bench Overall of the RL judge (and the SFT judge's in the heading), seconds beyond the
    SFT judge; failed jobs listed under it."""
    from egt.report.experiments import unique_metrics
    from egt.report.tables import make_cell

    exp = methods_experiment()
    labels = dict(exp.rows)
    groups = cells(jobs, exp)
    every = [j for js in groups.values() for j in js]
    sft = make_cell([m.get("overall") for m in unique_metrics(every, "sft", benchmark)])
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"Methods, one seed (SFT judge: {pct(sft.mean)}% Overall on the {benchmark} bench)",
        "",
        "| method | kept | flipped kept % (pool %) | bench Overall % | method CPU s |",
        "|:--|--:|--:|--:|--:|",
    ]
    for value, js in groups.items():
        row = cost_row(js[0])
        acc = make_cell([m.get("overall") for m in unique_metrics(js, "rl", benchmark)])
        kept = "–" if row["n_selected"] is None else f"{row['n_selected']:.0f}"
        secs = "–" if row["method_seconds"] is None else f"{row['method_seconds']:.0f}"
        lines.append(
            f"| {labels.get(value, value)} | {kept} | {pct(row['flipped_kept_rate'])} ({pct(row['flipped_rate'])}) "
            f"| {pct(acc.mean)} | {secs} |"
        )
    failed = [j for j in jobs if j["status"] != "completed" and override_value(j, exp.key) is not None]
    lines += [f"- FAILED {override_value(j, exp.key)}: {j.get('error')}" for j in failed]
    return "\n".join([*lines, "", QUICK_SECONDS, "", QUICK_NOTE])


class MethodsTableCallback(HydraCallback):
    """Hydra callback of ``experiment=methods_quick``: after every job, :func:`quick_table` over the sweep's
    jobs so far into ``<sweep dir>/methods_quick.md``; at the end of the multirun, printed. (Hydra skips
    ``on_multirun_end`` when a job failed, so the file, which lists the failed jobs, is the record.)"""

    @staticmethod
    def _write(config: Any) -> tuple[Path, str]:
        from egt.sweep import load_jobs

        root = Path(str(config.hydra.sweep.dir))
        text = quick_table(load_jobs(root))
        write_text_atomic(root / "methods_quick.md", text + "\n")
        return root / "methods_quick.md", text

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        self._write(config)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        path, text = self._write(config)
        print("\n" + text + f"\n\n(written to {path})")
