"""``python -m egt.report <run dir | sweep dir | artifacts dir> [--baseline ROW] [--out DIR] [--paper-rows]
[--min-consistency F] [--max-order-gap F]``

Writes Table 1 and, per benchmark, the category and diagnostics tables as Markdown
(``*.md``) and LaTeX booktabs (``*.tex``), plus ``report.md`` holding every Markdown table,
from the ``metrics.json`` files found under the directory alone. Under a sweep dir (jobs
with ``job.json``, egt.sweep) also the paper's Tables 2–5 (mean ± sd over seeds) and
Figures 2 and 4 as PNGs (egt.report.experiments); failed jobs are listed and make the
exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from egt.report.experiments import experiment_tables, failed_jobs
from egt.report.methods import cost_table, write_cost_figure, write_noise_figure
from egt.report.results import find_results
from egt.report.sweep_figures import write_fig2, write_fig4
from egt.sweep import load_jobs
from egt.report.table1 import benchmarks_of, category_table, diagnostics_table, table1
from egt.report.tables import Table, to_latex, to_markdown

log = logging.getLogger("egt.report")


def write_report(
    root: str | Path,
    out: Optional[str | Path] = None,
    baseline: Optional[str] = None,
    paper_rows: bool = False,
    min_consistency: Optional[float] = None,
    max_gap: Optional[float] = None,
) -> list[Path]:
    results = find_results(root)
    jobs = load_jobs(root)
    if not results and not jobs:
        raise FileNotFoundError(
            f"no eval metrics.json under {root}: run the eval stage first (python train.py stages=[eval] …)"
        )
    out = Path(out) if out else Path(root) / "report"
    out.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, Table]] = (
        [("table1", table1(results, baseline, paper_rows, min_consistency=min_consistency, max_gap=max_gap))]
        if results
        else []
    )
    tables += experiment_tables(jobs)
    cost = cost_table(jobs)
    if cost is not None:
        tables.append(("methods_cost", cost))
    for bench in benchmarks_of(results):
        tables.append((f"{bench}_categories", category_table(results, bench)))
        diag = diagnostics_table(results, bench)
        if diag.columns:
            tables.append((f"{bench}_diagnostics", diag))
    written = []
    for name, t in tables:
        for suffix, text in ((".md", to_markdown(t)), (".tex", to_latex(t, label=f"tab:{name}"))):
            (out / f"{name}{suffix}").write_text(text + "\n", encoding="utf-8")
            written.append(out / f"{name}{suffix}")
    written += write_fig2(jobs, out) + write_fig4(jobs, out) + write_cost_figure(jobs, out)
    written += write_noise_figure(jobs, out)
    failed = [f"- FAILED {j['_rel']} ({' '.join(j['overrides'])}): {j.get('error')}" for j in failed_jobs(jobs)]
    body = "\n\n".join(to_markdown(t) for _, t in tables)
    if failed:
        body = f"**{len(failed)} of {len(jobs)} jobs failed**\n\n" + "\n".join(failed) + "\n\n" + body
    (out / "report.md").write_text(body + "\n", encoding="utf-8")
    written.append(out / "report.md")
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m egt.report", description=__doc__.split("\n\n")[1])
    p.add_argument("root", help="a run dir, sweep dir or artifacts dir holding eval metrics.json files")
    p.add_argument("--baseline", help="row label the Avg. Gain is relative to (default: sft, else the first row)")
    p.add_argument("--out", help="output directory (default: <root>/report)")
    p.add_argument("--paper-rows", action="store_true", help="add the paper's reported Table 1 rows")
    p.add_argument(
        "--min-consistency",
        type=float,
        help="mark (†) a judge whose position consistency is below "
        "this fraction (default: its run's eval.position_bias.min_consistency, 0.8)",
    )
    p.add_argument(
        "--max-order-gap",
        type=float,
        help="mark (†) a judge whose accuracy with the better response "
        "first vs second differs by more (default: its run's eval.position_bias.max_gap, 0.1)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_report(
            args.root, args.out, args.baseline, args.paper_rows, args.min_consistency, args.max_order_gap
        )
    except (FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((Path(written[-1])).read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(w) for w in written))
    failed = failed_jobs(load_jobs(args.root))
    if failed:
        print(f"error: {len(failed)} job(s) failed (see report.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
