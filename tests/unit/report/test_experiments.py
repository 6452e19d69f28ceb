"""Paper Tables 2–5 and Figure 4 from hand-made sweep job files (golden Markdown / LaTeX)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egt.report.__main__ import main, write_report
from egt.report.experiments import EXPERIMENTS, experiment_table, experiment_tables
from egt.report.sweep_figures import fig4_points
from egt.report.tables import to_latex, to_markdown
from egt.sweep import load_jobs

GOLDEN = Path(__file__).parent / "golden"
COLS = [
    ["category/reasoning", "Reasoning"],
    ["category/hallucination", "Hallu."],
    ["category/general", "General"],
    ["overall", "Overall"],
]
SFT = ("s1", (0.5, 0.4, 0.6, 0.5))


def _metrics(model, key, vals):
    r, h, g, o = vals
    return {
        "model": model,
        "benchmark": "synthetic",
        "key": key,
        "columns": COLS,
        "headline_key": "overall",
        "metrics": {"category/reasoning": r, "category/hallucination": h, "category/general": g, "overall": o},
    }


def job(root: Path, name: str, overrides: list[str], rl: tuple | None, status: str = "completed") -> None:
    d = root / name
    d.mkdir(parents=True)
    metrics = [_metrics("sft", *SFT)] + ([_metrics("rl", *rl)] if rl else [])
    (d / "job.json").write_text(
        json.dumps(
            {
                "version": 1,
                "status": status,
                "error": None if status == "completed" else "ConfigError: empty selection",
                "overrides": overrides,
                "choices": {},
                "params": {},
                "metrics": metrics if status == "completed" else [],
                "files": {},
                "stages": {},
                "seconds": 1.0,
            }
        )
    )


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path)


def make_sweep(tmp_path: Path) -> Path:
    t2 = tmp_path / "table2"  # two seeds for Full RL and Selection, one for Selection & Sort
    job(t2, "0", ["ablation=full_rl", "rl.seed=0"], ("a0", (0.6, 0.5, 0.7, 0.6)))
    job(t2, "1", ["ablation=full_rl", "rl.seed=1"], ("a1", (0.8, 0.5, 0.7, 0.7)))
    job(t2, "2", ["ablation=selection", "rl.seed=0"], ("b0", (0.9, 0.6, 0.6, 0.7)))
    job(t2, "3", ["ablation=selection", "rl.seed=1"], ("b1", (0.7, 0.6, 0.6, 0.7)))
    job(t2, "4", ["ablation=selection_sort", "rl.seed=0"], ("c0", (0.9, 0.7, 0.8, 0.8)))
    job(t2, "5", ["ablation=selection_sort", "rl.seed=0"], ("c0", (0.9, 0.7, 0.8, 0.8)))  # a rerun: same eval key
    t3 = tmp_path / "table3"  # the paper's order, whatever the sweep's
    job(t3, "0", ["selection=entropy", "rl.seed=0"], ("e0", (0.9, 0.8, 0.7, 0.8)))
    job(t3, "1", ["selection=random", "rl.seed=0"], ("r0", (0.5, 0.5, 0.5, 0.5)))
    job(t3, "2", ["selection=accuracy", "rl.seed=0"], ("q0", (0.4, 0.6, 0.5, 0.5)))
    t4 = tmp_path / "explicit"  # python train.py -m entropy=answer,sentence,mix selection.k=8
    for i, (e, v) in enumerate((("answer", 0.8), ("sentence", 0.6), ("mix", 0.7))):
        job(t4, str(i), [f"entropy={e}", "selection.k=8"], (f"t4{e}", (v, v, v, v)))
    t5 = tmp_path / "table5"
    for i, (b, v) in enumerate((("high", 0.4), ("low", 0.8), ("mid", 0.6))):
        job(t5, str(i), [f"selection.band={b}", "rl.seed=0"], (f"t5{b}", (v, v, v, v)))
    f4 = tmp_path / "fig4"
    job(f4, "0", ["selection.fraction=1.0", "rl.seed=0"], ("f10", (0.7, 0.7, 0.7, 0.7)))
    job(f4, "1", ["selection.fraction=0.15", "rl.seed=0"], ("f150", (0.7, 0.7, 0.7, 0.6)))
    job(f4, "2", ["selection.fraction=0.15", "rl.seed=1"], ("f151", (0.7, 0.7, 0.7, 0.8)))
    job(f4, "3", ["selection.fraction=0.05", "rl.seed=0"], None, status="failed")
    return tmp_path


def test_table2_hand_worked(sweep):
    t = experiment_table(load_jobs(sweep / "table2"), EXPERIMENTS[0], "synthetic")
    md = to_markdown(t)
    # Full RL: reasoning (60, 80) → 70 ± 14.14, overall (60, 70) → 65 ± 7.07; the SFT row and
    # the rerun of Selection & Sort are one evaluation each
    assert "| SFT | 50.00 | 40.00 | 60.00 | 50.00 |" in md
    assert "| + Full RL | 70.00 ± 14.14 | 50.00 ± 0.00 | 70.00 ± 0.00 | 65.00 ± 7.07 |" in md
    assert "| + Selection | 80.00 ± 14.14 | 60.00 ± 0.00 | 60.00 ± 0.00 | 70.00 ± 0.00 |" in md
    assert "| + Selection & Sort | **90.00** | **70.00** | **80.00** | **80.00** |" in md
    assert "runs per row: SFT 1, + Full RL 2, + Selection 2, + Selection & Sort 1" in md


@pytest.mark.parametrize("name", ["table2", "table3", "table4", "table5", "fig4"])
def test_golden(sweep, name):
    tables = dict(experiment_tables(load_jobs(sweep)))
    md, tex = to_markdown(tables[name]), to_latex(tables[name], label=f"tab:{name}")
    assert md + "\n" == (GOLDEN / f"{name}.md").read_text(encoding="utf-8")
    assert tex + "\n" == (GOLDEN / f"{name}.tex").read_text(encoding="utf-8")


def test_rows_follow_the_paper(sweep):
    tables = dict(experiment_tables(load_jobs(sweep)))
    assert [r.label for r in tables["table3"].rows] == ["Random", "Accuracy", "Entropy"]
    assert [r.label for r in tables["table4"].rows] == ["Sentence", "Answer", "Mix"]
    assert [r.label for r in tables["table5"].rows] == ["Low-Entropy", "Mid-Entropy", "High-Entropy"]
    assert [r.label for r in tables["fig4"].rows] == ["0% (SFT)", "15%", "100%"]
    assert [c.header for c in tables["table2"].columns] == ["Reasoning", "Hallu.", "General", "Overall"]


def test_fig4_points_and_failed_job(sweep):
    points, sft = fig4_points(load_jobs(sweep / "fig4"), "synthetic")
    assert sft == (50.0, None)
    assert [(p, round(m, 6), round(s, 4) if s else s) for p, m, s in points] == [
        (15.0, 70.0, 14.1421),
        (100.0, 70.0, None),
    ]
    md = to_markdown(dict(experiment_tables(load_jobs(sweep)))["fig4"])
    assert "FAILED job" in md and "selection.fraction=0.05" in md and "empty selection" in md


def test_cli_writes_tables_and_figure4_and_fails_on_failed_jobs(sweep, capsys):
    assert main([str(sweep)]) == 1  # one job failed
    out = sweep / "report"
    for name in ("table2", "table3", "table4", "table5", "fig4"):
        assert (out / f"{name}.md").is_file() and (out / f"{name}.tex").is_file()
    png = (out / "fig4.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    report = (out / "report.md").read_text()
    assert report.startswith("**1 of 19 jobs failed**")
    assert "job(s) failed" in capsys.readouterr().err
    assert main([str(sweep / "table2")]) == 0
    assert write_report(sweep / "table3", tmp := sweep / "r3")[-1] == tmp / "report.md"
