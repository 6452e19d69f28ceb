"""The methods comparison's cost table (egt.report.methods) from hand-made job.json records."""

import pytest

from egt.report.methods import cost_row, cost_table
from egt.report.tables import to_markdown


def _job(method, seed, kept, flipped, draws, probe_s, prompts, rl_s, rft=None):
    stages = {
        "select": {
            "summary": {
                "n_selected": kept,
                "n_pool": 100,
                "flipped_kept": flipped,
                "flipped_rate": 0.2,
                "ambiguous_kept": 0,
                "ambiguous_rate": 0.1,
                "probe_draws": draws,
                "probe_seconds": probe_s,
            }
        },
        "rl": {"summary": {"prompts_generated": prompts, "train_seconds": rl_s}},
    }
    if rft:
        stages["rft"] = {"summary": {"kept": rft[0], "train_seconds": rft[1]}}
    return {"overrides": [f"method={method}", f"rl.seed={seed}"], "status": "completed", "stages": stages}


def test_a_row_per_method_in_the_papers_order_with_means_over_seeds():
    jobs = [
        _job("pass_rate", 0, 40, 2, 800, 80.0, 64, 10.0),
        _job("egt", 0, 15, 1, 100, 10.0, 64, 12.0),
        _job("egt", 1, 15, 2, 100, 10.0, 64, 14.0),
        _job("unifiedreward_think", 0, 10, 6, 800, 80.0, 64, 10.0, rft=(50, 30.0)),
    ]
    t = cost_table(jobs)
    assert [r.label for r in t.rows] == [
        "EGT (answer entropy)",
        "Pass-rate band",
        "UnifiedReward-Think (RFT + incorrect)",
    ]
    col = {c.key: i for i, c in enumerate(t.columns)}
    egt, band, urt = t.rows
    assert egt.cells[col["flipped_kept_rate"]].mean == pytest.approx((1 / 15 + 2 / 15) / 2)
    assert egt.cells[col["rl_seconds"]].mean == pytest.approx(13.0)
    assert egt.cells[col["rl_seconds"]].sd == pytest.approx(2**0.5)
    assert egt.cells[col["method_seconds"]].mean == pytest.approx(23.0)  # probe 10 + RL 13
    assert band.cells[col["rft_kept"]].mean is None  # no rft stage: "–"
    assert urt.cells[col["method_seconds"]].mean == pytest.approx(80 + 30 + 10)
    assert "| UnifiedReward-Think (RFT + incorrect) | 10 |" in to_markdown(t)


def test_no_method_sweep_no_table():
    assert cost_table([{"overrides": ["selection=entropy"], "status": "completed", "stages": {}}]) is None


def test_outside_the_synthetic_world_noise_columns_are_unknown():
    row = cost_row({"stages": {"select": {"summary": {"n_selected": 5, "n_pool": 10}}}})
    assert row["kept_fraction"] == 0.5
    assert row["flipped_kept_rate"] is None and row["method_seconds"] is None


def test_accuracy_against_cost_points_and_figure(tmp_path):
    from egt.report.methods import cost_points, method_points, write_cost_figure, write_noise_figure

    def with_eval(job, acc, key):
        job["metrics"] = [
            {"model": "rl", "benchmark": "synthetic", "key": key, "metrics": {"overall": acc}},
            {"model": "sft", "benchmark": "synthetic", "key": "sft", "metrics": {"overall": 0.7}},
        ]
        return job

    jobs = [
        with_eval(_job("egt", 0, 15, 1, 100, 10.0, 64, 12.0), 0.72, "a"),
        with_eval(_job("egt", 1, 15, 1, 100, 10.0, 64, 14.0), 0.74, "b"),
        with_eval(_job("full_rl", 0, 100, 20, 100, 10.0, 64, 30.0), 0.66, "c"),
    ]
    pts = cost_points(jobs, "synthetic")
    assert [p[0] for p in pts] == ["Full RL", "EGT (answer entropy)"]
    label, secs, secs_sd, acc, acc_sd = pts[1]
    assert secs == pytest.approx(23.0) and acc == pytest.approx(73.0) and acc_sd == pytest.approx(2**0.5)
    (path,) = write_cost_figure(jobs, tmp_path)
    assert path.name == "methods_cost.png" and path.stat().st_size > 1000

    # the same accuracy against the flipped labels kept, in % (EGT: 1 of 15 kept in both seeds, Full RL 20 of 100)
    noise = dict((p[0], p[1:]) for p in method_points(jobs, "synthetic", "flipped_kept_rate"))
    assert noise["EGT (answer entropy)"][:3] == pytest.approx((100 / 15, 0.0, 73.0))
    assert noise["Full RL"][0] == pytest.approx(20.0) and noise["Full RL"][2] == pytest.approx(66.0)
    (path,) = write_noise_figure(jobs, tmp_path)
    assert path.name == "methods_noise.png" and path.stat().st_size > 1000


def test_a_selection_that_keeps_everything_pays_no_probe():
    job = _job("full_rl", 0, 100, 20, 100, 10.0, 64, 30.0)
    job["stages"]["select"]["summary"]["method"] = "all"
    row = cost_row(job)
    assert row["probe_seconds"] == 10.0 and row["method_seconds"] == 30.0  # shown, not counted


def test_cpu_seconds_are_the_cost_where_recorded_wall_seconds_where_not():
    job = _job("egt", 0, 15, 1, 100, 10.0, 64, 12.0, rft=(50, 30.0))
    job["stages"]["select"]["summary"]["probe_cpu_seconds"] = 7.0
    job["stages"]["rl"]["summary"]["train_cpu_seconds"] = 9.0
    row = cost_row(job)  # rft has no CPU seconds (an artifact from before they were recorded): its wall ones
    assert (row["probe_seconds"], row["rft_seconds"], row["rl_seconds"]) == (7.0, 30.0, 9.0)
    assert row["method_seconds"] == pytest.approx(7 + 30 + 9)


def test_the_quick_table_is_written_after_every_job_with_the_failed_ones(tmp_path):
    import json

    from omegaconf import OmegaConf

    from egt.report.methods import MethodsTableCallback

    ok = _job("egt", 0, 15, 1, 100, 10.0, 64, 12.0)
    bad = {"overrides": ["method=difficulty_prior", "rl.seed=0"], "status": "failed", "error": "budget", "stages": {}}
    for i, job in enumerate((ok, bad)):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "job.json").write_text(json.dumps(job))
    MethodsTableCallback().on_job_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    text = (tmp_path / "methods_quick.md").read_text()
    assert "| EGT (answer entropy) | 15 |" in text and "- FAILED difficulty_prior: budget" in text
    # labelled illustrative, pointing at the protocol's verdicts: files that exist in the repository
    import re
    from pathlib import Path

    assert "illustrative" in text
    pointed = re.findall(r"docs/[\w./-]+\.md", text)
    assert "docs/reproduction/methods-v1.md" in pointed
    assert all((Path(__file__).resolve().parents[3] / p).is_file() for p in pointed), pointed


def test_the_noise_correlation_over_methods_in_the_cost_tables_notes():
    """Four methods whose accuracy falls as the flipped labels they keep rise: ρ = −1 over the methods'
    means, its Fisher-z CI (SE 1.06 / sqrt(4 − 3)), and the sentence in the cost table's notes; three
    methods give no correlation (too few for a CI)."""
    import math

    from egt.report.methods import noise_correlation

    def job(method, flipped, acc):
        j = _job(method, 0, 10, flipped, 100, 1.0, 8, 1.0)
        j["metrics"] = [{"model": "rl", "benchmark": "synthetic", "key": method, "metrics": {"overall": acc}}]
        return j

    jobs = [job("egt", 1, 0.70), job("random", 3, 0.65), job("accuracy", 5, 0.60), job("full_rl", 2, 0.68)]
    rho, lo, hi, n = noise_correlation(jobs)
    assert (rho, n) == (-1.0, 4)
    half = 1.959964 * 1.06  # z of rho = -1 is clipped at atanh(-0.999999) = -7.25
    assert lo == pytest.approx(math.tanh(math.atanh(-0.999999) - half), abs=1e-4)
    assert hi == pytest.approx(math.tanh(math.atanh(-0.999999) + half), abs=1e-4)
    notes = " ".join(cost_table(jobs).notes)
    assert (
        "Across the 4 methods" in notes and "Spearman ρ between the flipped labels kept" in notes and "-1.00" in notes
    )
    assert noise_correlation(jobs[:3]) is None


def test_seconds_counted_from_a_resume_on_are_named_in_the_notes():
    """A resumed fit without egt's clock in its checkpoint (fit_seconds_complete false, or a resumed summary from
    before egt kept it) and a probe resumed from shards without their seconds undercount their stage: the cost
    table's notes name the job and stage instead of passing the seconds off as the method's cost."""
    from egt.report.methods import partial_seconds

    clean = _job("egt", 0, 15, 1, 100, 10.0, 64, 12.0)
    resumed_ok = _job("egt", 1, 15, 1, 100, 10.0, 64, 12.0)
    resumed_ok["stages"]["rl"]["summary"] |= {"resumed": True, "fit_seconds_complete": True}
    old_resume = _job("random", 0, 15, 1, 100, 10.0, 64, 12.0)
    old_resume["stages"]["rl"]["summary"]["resumed"] = True  # written before egt kept the clock
    probe = _job("pass_rate", 2, 40, 2, 800, 80.0, 64, 10.0)
    probe["stages"]["select"]["summary"]["probe_seconds_complete"] = False
    assert [partial_seconds(j) for j in (clean, resumed_ok, old_resume, probe)] == [[], [], ["rl"], ["probe"]]
    full = _job("full_rl", 0, 100, 20, 100, 10.0, 64, 30.0)
    full["stages"]["select"]["summary"] |= {"method": "all", "probe_seconds_complete": False}
    assert partial_seconds(full) == []  # its probe is no cost of its own
    notes = " ".join(cost_table([clean, resumed_ok, old_resume, probe, full]).notes)
    assert "Random seed 0 (rl); Pass-rate band seed 2 (probe)." in notes
    assert "count from a resume on" not in " ".join(cost_table([clean, resumed_ok]).notes)
