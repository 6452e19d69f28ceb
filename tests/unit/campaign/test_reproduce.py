"""python -m egt.reproduce: the protocol block, the planned commands, the dry run's CPU estimate (the real
configs composed) and the gates, on hand-made results. Nothing is trained here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from egt.campaign.reproduce import estimate, gate_rl, main, plan, read_protocol

PROTOCOL = """# A protocol

Text around the block is ignored.

```yaml
# egt-protocol
threads_per_process: 1
workers: 2
seeds: 2
seeds_tier2: 1
calibration_seeds: [100]
formats:
  fmt_a: [distill.teacher.judge_each=false]
common: [data.world.n_bench=500, rl.epochs=2, eval.order=official]
sweeps:
  - {name: table2, experiment: table2, tier: 1}
  - {name: beyond, experiment: table4, tier: 2, sweep: {entropy: "answer,no_such_entropy"}}
gates: {sft_overall: [0.55, 0.82], rl_changed_min: 0.05, rl_parse_failures_max: 0.05}
stats: {alpha: 0.05, power: 0.8, margin: 2.0, rho_margin: 0.1, auroc_margin: 0.05}
timings: {sft_step: 0.2, rl_step: 1.0, eval_item: 0.03, probe_item: 0.03, job_overhead: 10, stage_overhead: 30}
```
"""


@pytest.fixture
def protocol(tmp_path):
    path = tmp_path / "protocol.md"
    path.write_text(PROTOCOL)
    return read_protocol(path)


def test_the_protocol_block_is_required_and_complete(tmp_path):
    bad = tmp_path / "p.md"
    bad.write_text("no block here")
    with pytest.raises(KeyError, match="no ```yaml block"):
        read_protocol(bad)
    bad.write_text(PROTOCOL.replace("seeds_tier2: 1\n", ""))
    with pytest.raises(KeyError, match="'seeds_tier2'"):
        read_protocol(bad)


def test_the_plan_runs_upstream_then_calibration_then_the_tiers(protocol, tmp_path):
    steps = plan(protocol, tmp_path / "sw", tmp_path / "art")
    assert [s["phase"] for s in steps] == ["upstream", "calibration", "tier1", "tier2"]
    table2 = steps[2]["cmd"]
    assert table2[1:4] == ["train.py", "experiment=[small,table2]", 'seeds="0,1"']
    assert "distill.teacher.judge_each=false" in table2 and f"paths.artifacts={tmp_path / 'art'}" in table2
    assert f"hydra.sweep.dir={tmp_path / 'sw' / 'fmt_a' / 'table2'}" in table2
    assert 'seeds="100"' in steps[1]["cmd"] and "ablation=full_rl" in steps[1]["cmd"]
    assert "entropy=answer,no_such_entropy" in steps[3]["cmd"] and 'seeds="0"' in steps[3]["cmd"]
    assert str(tmp_path / "sw" / "calibration" / "fmt_a") in " ".join(steps[1]["cmd"])  # outside the tables' root


def test_the_dry_run_estimates_cpu_from_the_composed_configs(protocol, tmp_path, capsys):
    est = estimate(protocol)
    arms = {a["arm"]: a for a in est["arms"]}
    full = arms["ablation=full_rl"]
    assert full["selected"] == 1000 and full["steps"] == math.ceil(1000 / 8) * 2 * 2 and full["evaluated"] == 500
    assert full["cpu_s"] == pytest.approx(500 * 1.0 + 500 * 0.03 + 10)
    assert arms["ablation=selection"]["steps"] == math.ceil(150 / 8) * 2 * 2
    assert arms["entropy=answer"]["new_seeds"] == 1  # table4's selection seed differs from table2's: its own run
    assert len(est["missing"]) == 1 and "no_such_entropy" in est["missing"][0]
    assert est["phases"]["calibration"] == pytest.approx(full["cpu_s"])
    tier1 = 2 * sum(arms[f"ablation={r}"]["cpu_s"] for r in ("full_rl", "selection", "selection_sort"))
    assert est["phases"]["tier1"] == pytest.approx(tier1)
    assert main(["--protocol", str(protocol.path), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[upstream] fmt_a/upstream: train.py experiment=small" in out
    assert "total:" in out and "CPU h" in out and "CPUs" in out and "MISSING" in out
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def _calibration(root, art, changed, parse_failures=0.0):
    sft = np.zeros(100, dtype=int)
    for seed, k in enumerate(changed):
        d = root / f"job{seed}"
        d.mkdir(parents=True)
        metrics = []
        for model, key, n_right in (("sft", "s", 0), ("rl", f"r{seed}", k)):
            (art / "eval" / key).mkdir(parents=True, exist_ok=True)
            (art / "eval" / key / "predictions.jsonl").write_text(
                "".join(
                    json.dumps({"id": f"i{i}", "view": "official", "label": 1, "pred": 1 if i < n_right else 2}) + "\n"
                    for i in range(len(sft))
                )
            )
            metrics.append(
                {
                    "model": model,
                    "benchmark": "synthetic",
                    "key": key,
                    "metrics": {"overall": 0.5, "parse_failure_rate": parse_failures},
                }
            )
        (d / "job.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "overrides": ["ablation=full_rl"],
                    "params": {"rl.seed": 100 + seed},
                    "metrics": metrics,
                }
            )
        )


def test_gate_g2_needs_rl_to_change_enough_decisions(protocol, tmp_path, capsys):
    _calibration(tmp_path / "sw" / "calibration" / "fmt_a", tmp_path / "art", [8, 4])
    assert gate_rl(protocol, tmp_path / "sw", tmp_path / "art") == []  # 6% of the decisions changed
    _calibration(tmp_path / "sw2" / "calibration" / "fmt_a", tmp_path / "art2", [2, 4])
    (bad,) = gate_rl(protocol, tmp_path / "sw2", tmp_path / "art2")
    assert bad.startswith("G2 fmt_a: Full RL changed 0.03")
    _calibration(tmp_path / "sw3" / "calibration" / "fmt_a", tmp_path / "art3", [30, 30], parse_failures=0.2)
    (bad,) = gate_rl(protocol, tmp_path / "sw3", tmp_path / "art3")  # moved, but by no longer answering
    assert bad == "G2 fmt_a: Full RL's parse failures 0.2 above 0.05"


def _upstream(sweeps, overall):
    d = sweeps / "fmt_a" / "upstream"
    d.mkdir(parents=True)
    (d / "job.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "overrides": [],
                "params": {},
                "metrics": [{"model": "sft", "benchmark": "synthetic", "key": "s", "metrics": {"overall": overall}}],
            }
        )
    )


def test_a_failed_gate_stops_the_run_before_any_table(protocol, tmp_path, monkeypatch, capsys):
    import egt.campaign.reproduce as r

    ran = []
    monkeypatch.setattr(r, "_execute", lambda step, logs, threads: ran.append(step["phase"]) or 1.0)
    _upstream(tmp_path / "sw", 0.90)  # no headroom: above gates.sft_overall
    assert r.run(protocol, tmp_path / "sw", tmp_path / "art", tmp_path / "out", 2, skip_gates=False) == 3
    assert ran == ["upstream"]
    assert "G1 fmt_a: SFT Overall 0.9 outside [0.55, 0.82]" in capsys.readouterr().err
    _upstream(tmp_path / "ok", 0.70)
    assert r.gate_sft(protocol, tmp_path / "ok") == []


def test_status_counts_finished_jobs_against_the_plan(protocol, tmp_path, capsys):
    from egt.campaign.reproduce import status

    sw = tmp_path / "sw"

    def job(d, state):
        d.mkdir(parents=True, exist_ok=True)
        (d / "job.json").write_text(json.dumps({"status": state}))

    job(sw / "fmt_a" / "upstream", "completed")
    job(sw / "calibration" / "fmt_a" / "0", "completed")
    for i, state in enumerate(["completed", "completed", "failed"]):
        job(sw / "fmt_a" / "table2" / str(i), state)
    (sw / "fmt_a" / "table2" / "3").mkdir()  # a job that has not written its record yet
    rows = {r["name"]: r for r in status(protocol, sw, tmp_path / "art")}
    assert rows["upstream"] == {
        "phase": "upstream",
        "format": "fmt_a",
        "name": "upstream",
        "planned": 1,
        "completed": 1,
        "failed": 0,
        "seconds_left": 0.0,
    }
    assert (rows["calibration"]["planned"], rows["calibration"]["completed"]) == (1, 1)
    # table2: 3 ablation rows x 2 seeds; beyond: the protocol's own entropy axis (2 values) x 1 tier-2 seed
    assert (rows["table2"]["planned"], rows["table2"]["completed"], rows["table2"]["failed"]) == (6, 2, 1)
    assert (rows["beyond"]["planned"], rows["beyond"]["completed"]) == (2, 0)
    assert (
        main(
            [
                "--protocol",
                str(protocol.path),
                "--out",
                str(tmp_path / "out"),
                "--sweeps",
                str(sw),
                "--artifacts",
                str(tmp_path / "art"),
                "--status",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "4 of 10 jobs completed (40%)" in out
    assert "time left: not estimable" in out  # these jobs wrote no train.log: no measured seconds
    assert not (tmp_path / "out").exists()  # nothing runs, nothing is written


def test_time_left_is_each_arms_seeds_left_at_its_median_measured_seconds(protocol, tmp_path):
    """table2 (3 arms × 2 seeds): arm 0 done (200 s, 220 s); arm 1 one seed done (600 s), one failed (left);
    arm 2 not started, at the step's median (220 s). Left: 0 + 1 × 600 + 2 × 220 = 1,040 process seconds;
    the upstream phase is done and the tier-2 step has no finished job: no wall estimate until it has."""
    from egt.campaign.reproduce import _step_arms, status, wall_left

    sw = tmp_path / "sw"
    steps = {s["name"]: s for s in plan(protocol, sw, tmp_path / "art")}
    arms = _step_arms(protocol, steps["table2"])
    assert len(arms) == 3

    def job(name, arm, seed, state, seconds=None):
        d = sw / "fmt_a" / "table2" / name
        d.mkdir(parents=True)
        (d / "job.json").write_text(json.dumps({"status": state, "overrides": [f"rl.seed={seed}", *arm, "x=1"]}))
        if seconds is not None:  # egt.cli's end-of-run table, as a job's train.log holds it
            table = "stage    state     seconds  headline\nsft      reused        0.0  x\n"
            (d / "train.log").write_text(table + f"rl       computed  {seconds}  x\n")

    job("0", arms[0], 0, "completed", 200.0)
    job("1", arms[0], 1, "completed", 220.0)
    job("2", arms[1], 0, "completed", 600.0)
    job("3", arms[1], 1, "failed", 50.0)
    rows = {r["name"]: r for r in status(protocol, sw, tmp_path / "art")}
    assert rows["table2"]["seconds_left"] == pytest.approx(1040.0)
    assert rows["beyond"]["seconds_left"] is None and wall_left(list(rows.values()), 2) is None
    assert wall_left([rows["table2"]], 2) == pytest.approx(1040.0)  # one step: its own time, whatever the workers
    # phases one after another; a phase's steps in plan order, each to the thread that comes free first
    two = [{"phase": "tier1", "seconds_left": 300.0}, {"phase": "tier1", "seconds_left": 100.0}]
    assert wall_left([*two, {"phase": "tier2", "seconds_left": 50.0}], 2) == pytest.approx(300.0 + 50.0)
    # the third step starts when the 100 s one ends (ThreadPoolExecutor.map): 100 + 400, not max(400, 800 / 2)
    assert wall_left([*two, {"phase": "tier1", "seconds_left": 400.0}], 2) == pytest.approx(500.0)
    assert wall_left([*two, {"phase": "tier1", "seconds_left": 400.0}], 1) == pytest.approx(800.0)


def test_the_arms_are_the_overrides_hydras_sweeper_gives_the_jobs():
    """job.json records the overrides Hydra's basic sweeper wrote back (``3e-5`` → ``3e-05``, ``true`` → ``True``)
    after train.py rewrote a group's dotted key (``rl.loss`` → ``rl/loss``): the arms are written the same
    way, or no finished job would match its arm and a finished step would show its whole time left."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from egt.campaign.reproduce import _product, _sweep_axes
    from egt.cli import rewrite_group_args

    exp = OmegaConf.create({"hydra": {"sweeper": {"params": {"rl.seed": "0,1", "entropy": "answer,mix"}}}})
    sweep = {"rl.lr": "1e-5, 3e-5", "probe.both_orders": "true,false", "rl.loss": "ppo_clip,stable_reinforce"}
    arms = _product(_sweep_axes(exp, sweep))
    # what the sweeper gives each job, from the command line train.py passes to Hydra (seeds aside)
    argv = rewrite_group_args(["entropy=answer,mix", *(f"{k}={v}" for k, v in sweep.items())])
    (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(argv), None)
    assert arms == jobs and len(arms) == 16
    assert ["entropy=answer", "rl.lr=1e-05", "probe.both_orders=True", "rl/loss=ppo_clip"] in arms
    # a protocol axis replaces the experiment's own of the same key, as the command line's value does in Hydra
    assert _product(_sweep_axes(exp, {"entropy": "sentence"})) == [["entropy=sentence"]]
    assert _product({"x": '"a,b",c'}) == [['x="a,b"'], ["x=c"]]  # a quoted value keeps its comma


def test_an_arms_later_seeds_do_not_pay_again_for_what_its_seeds_share(protocol, tmp_path):
    """table2, arm 0's seed 0 computed a sampled probe (500 s) besides its RL and eval (200 s): its seed 1 is
    left at 200 s (the probe is keyed without rl.seed: reused), not 700 s; arms 1 and 2 (not started) at the
    step's median job, 700 s. Left: 200 + 2 × 2 × 700 = 3,000 s."""
    from egt.campaign.reproduce import _step_arms, status

    sw = tmp_path / "sw"
    steps = {s["name"]: s for s in plan(protocol, sw, tmp_path / "art")}
    arm = _step_arms(protocol, steps["table2"])[0]
    d = sw / "fmt_a" / "table2" / "0"
    d.mkdir(parents=True)
    (d / "job.json").write_text(json.dumps({"status": "completed", "overrides": ["rl.seed=0", *arm]}))
    (d / "train.log").write_text(
        "stage    state     seconds  headline\nsft      reused        0.0  x\nprobe    computed    500.0  x\n"
        "select   computed      1.0  x\nrl       computed    150.0  x\neval     computed     49.0  x\n"
    )
    rows = {r["name"]: r for r in status(protocol, sw, tmp_path / "art")}
    assert rows["table2"]["seconds_left"] == pytest.approx(200.0 + 2 * 2 * 700.0)


def test_the_current_default_is_the_format_the_default_config_already_is(protocol, tmp_path):
    from egt.campaign.reproduce import current_default

    assert current_default(protocol) is None  # fmt_a (judge_each=false) is not what python train.py runs
    two = tmp_path / "two.md"
    two.write_text(
        PROTOCOL.replace(
            "  fmt_a: [distill.teacher.judge_each=false]\n",
            "  fmt_a: [distill.teacher.judge_each=false]\n  fmt_b: [distill.teacher.judge_each=true]\n",
        )
    )
    assert current_default(read_protocol(two)) == "fmt_b"


def test_report_writes_an_interim_verdict_from_the_finished_jobs(protocol, tmp_path, capsys):
    sw, art = tmp_path / "sw", tmp_path / "art"
    _upstream(sw, 0.70)
    _calibration(sw / "calibration" / "fmt_a", art, [8, 4])
    assert (
        main(
            [
                "--protocol",
                str(protocol.path),
                "--out",
                str(tmp_path / "out"),
                "--sweeps",
                str(sw),
                "--artifacts",
                str(art),
                "--report",
            ]
        )
        == 0
    )
    text = (tmp_path / "out" / "verdict.md").read_text()
    assert text.startswith("# INTERIM verdicts") and "**2 of 10 jobs finished**" in text
    assert "still to run: fmt_a/table2 0/6, fmt_a/beyond 0/2." in text
    assert (
        "| fmt_a | **(e)** selection + sort ≥ selection ≥ full RL ≥ SFT (Table 2) | | | | | **not run yet** |" in text
    )
    assert "## Time per sweep" in text
    assert not list(sw.glob("fmt_a/table2/*"))  # no job ran


def test_report_on_a_finished_run_writes_the_protocols_verdict_not_an_interim_one(protocol, tmp_path, monkeypatch):
    import egt.campaign.reproduce as r
    import egt.campaign.reproduction as rep

    seen = []
    monkeypatch.setattr(rep, "write_reproduction", lambda *a, interim=None: seen.append(interim) or tmp_path)
    row = {"phase": "tier1", "format": "fmt_a", "name": "table2", "planned": 6, "completed": 6, "failed": 0}
    monkeypatch.setattr(r, "status", lambda *a: [row])
    r.report(protocol, tmp_path / "sw", tmp_path / "art", tmp_path / "out")
    assert seen == [None]  # every planned job completed: the final verdict
    monkeypatch.setattr(r, "status", lambda *a: [{**row, "completed": 5, "failed": 1}])
    r.report(protocol, tmp_path / "sw", tmp_path / "art", tmp_path / "out")
    assert seen[1].startswith("**5 of 6 jobs finished**") and "fmt_a/table2 5/6" in seen[1]


def test_commands_run_in_the_checkout():
    """The default sweep and artifact folders and every command's working directory are the checkout
    (where train.py is), also from inside egt/campaign/."""
    from egt.campaign.reproduce import REPO

    assert (REPO / "train.py").is_file()
