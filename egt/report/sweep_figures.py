"""Figures 2 and 4 of a sweep directory, from its ``job.json`` files and the probe tables
copied beside them (no artifacts dir, no wandb)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from egt.report.experiments import EXPERIMENTS, benchmarks, cells, unique_metrics
from egt.report.tables import make_cell

log = logging.getLogger(__name__)
FIG4 = next(e for e in EXPERIMENTS if e.name == "fig4")


def fig4_points(jobs: Sequence[dict[str, Any]], benchmark: str, metric: str = "overall"):
    """([(percent, mean, sd)], (sft mean, sd) or None), accuracies in %."""
    groups = cells(jobs, FIG4)
    points = []
    for value, js in groups.items():
        c = make_cell([m.get(metric) for m in unique_metrics(js, "rl", benchmark)])
        if c.mean is not None:
            points.append((float(value) * 100, c.mean * 100, None if c.sd is None else c.sd * 100))
    all_jobs = [j for js in groups.values() for j in js]
    s = make_cell([m.get(metric) for m in unique_metrics(all_jobs, "sft", benchmark)])
    sft = None if s.mean is None else (s.mean * 100, None if s.sd is None else s.sd * 100)
    return points, sft


def write_fig4(jobs: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    from egt.report.figures import plot_fig4
    from egt.report.table1 import SHORT

    written = []
    benches = benchmarks(jobs)
    for bench in benches:
        points, sft = fig4_points(jobs, bench)
        if not points:
            continue
        name = "fig4.png" if len(benches) == 1 else f"fig4_{bench}.png"
        written.append(plot_fig4(points, out / name, sft, ylabel=f"{SHORT.get(bench, bench)} overall accuracy (%)"))
    return written


def write_fig2(jobs: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Figure 2 (PNG + Markdown) once per distinct Figure 2 among the jobs' probe tables: two probes that
    bin to the same accuracy-per-entropy table and rho (e.g. ``probe.both_orders=true``, whose first order
    is the plain probe) are drawn once, under ``fig2``; different ones under ``fig2_<probe key>``."""
    import pandas as pd

    from egt.report.figures import entropy_accuracy, fig2_markdown, plot_fig2

    paths: dict[str, Path] = {}
    uses: Counter[str] = Counter()
    for j in jobs:
        name = (j.get("files") or {}).get("probe")
        key = str(((j.get("stages") or {}).get("probe") or {}).get("key") or name)
        if name and (Path(j["_dir"]) / name).is_file():
            paths.setdefault(key, Path(j["_dir"]) / name)
            uses[key] += 1
    # one entry per distinct figure; the probe most jobs share names it (most_common keeps ties in job order)
    figures: dict[str, tuple[str, Path, Any, Any]] = {}
    for key, _ in uses.most_common():
        df, rho = entropy_accuracy(pd.read_parquet(paths[key]))
        figures.setdefault(df.to_csv() + repr(rho), (key, paths[key], df, rho))
    written = []
    for key, path, df, rho in figures.values():
        stem = "fig2" if len(figures) == 1 else f"fig2_{key}"
        written.append(plot_fig2(df, out / f"{stem}.png", rho))
        (out / f"{stem}.md").write_text(fig2_markdown(df, rho) + f"\nprobe table: {path}\n", encoding="utf-8")
        (out / f"{stem}.json").write_text(json.dumps({"probe": str(path), "spearman": rho}, indent=1), encoding="utf-8")
        written.append(out / f"{stem}.md")
    return written
