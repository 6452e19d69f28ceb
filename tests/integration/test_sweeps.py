"""The paper's experiments as smoke sweeps on the tiny model (one seed, quick sizes).

One upstream (data, distill, SFT, probe) is computed once for the session and shared by
every sweep through one artifacts dir; each sweep then runs RL and eval per job.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import QUICK, REPO, cli, train_py
from egt.sweep import load_jobs, override_value

pytestmark = pytest.mark.slow
EXPERIMENTS = ("table2", "table3", "table4", "table5", "fig4")


@contextlib.contextmanager
def one_thread():
    """One intra-op thread per child: on a shared 2-core box, the default (one per core) spins
    against other processes and made a tiny RL step ~20× slower (5.4 s vs 0.27 s measured)."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """(artifacts dir, sweeps root) with the upstream stages finished."""
    root = tmp_path_factory.mktemp("sweeps")
    art = root / "art"
    with one_thread():
        cli(art, *QUICK, "stages=[probe]")
    return art, root / "multirun"


@pytest.fixture(scope="session")
def smoke(shared):
    """Every experiment as a one-seed smoke sweep; returns the sweeps root."""
    art, root = shared
    with one_thread():
        for name in EXPERIMENTS:
            cli(art, f"experiment=[quick,{name}]", "seeds=0", "eval.order=official", f"hydra.sweep.dir={root}/{name}")
    return root


# rows; Table 2's SFT and Figure 4's 0% row are no job
ROWS = {
    "table2": (4, "ablation"),
    "table3": (3, "selection"),
    "table4": (3, "entropy"),
    "table5": (3, "selection.band"),
    "fig4": (6, "selection.fraction"),
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_is_a_sweep_sharing_sft_and_probe(smoke, name):
    jobs = load_jobs(smoke / name)
    n_jobs = ROWS[name][0] - (name in ("table2", "fig4"))
    assert len(jobs) == n_jobs and all(j["status"] == "completed" for j in jobs)
    assert len({override_value(j, ROWS[name][1]) for j in jobs}) == n_jobs
    for stage in ("data", "sft", "probe"):
        assert len({j["stages"][stage]["key"] for j in jobs}) == 1 and all(j["stages"][stage]["reused"] for j in jobs)
    assert len({j["stages"]["rl"]["key"] for j in jobs}) == n_jobs  # RL once per job
    assert {m["model"] for j in jobs for m in j["metrics"]} == {"sft", "rl"}
    assert all(j["params"]["rl.seed"] == 0 and (Path(j["_dir"]) / "probe.parquet").is_file() for j in jobs)


def test_report_on_the_smoke_sweeps(smoke):
    from egt.report.__main__ import main

    assert main([str(smoke)]) == 0
    out = smoke / "report"
    for name in EXPERIMENTS:
        md = (out / f"{name}.md").read_text()
        header = "| Method | Reasoning | Hallu. | General | Overall | Macro |"
        assert header in md, md
        rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
        assert len(rows) == ROWS[name][0], md
        assert (out / f"{name}.tex").read_text().count("\\\\") == ROWS[name][0] + 1
    assert "| SFT |" in (out / "table2.md").read_text()
    assert "| 0% (SFT) |" in (out / "fig4.md").read_text() and "| 100% |" in (out / "fig4.md").read_text()
    for png in ("fig2.png", "fig4.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "table1.md").is_file()


@pytest.mark.parametrize("notebook", sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb")))
def test_notebook_runs_on_the_smoke_sweep(smoke, notebook, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e .[test] (nbclient, ipykernel)")
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / notebook, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), (
        "notebook outputs must be stripped in git"
    )
    monkeypatch.setenv("EGT_SWEEP_DIR", str(smoke))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()


def test_explicit_form_and_a_failed_job_does_not_stop_the_others(shared):
    """``-m entropy=answer,sentence,mix selection.k=…``: Table 4 without the experiment; k=0
    fails those jobs (config validation, inside the job), the others run, the multirun exits non-zero."""
    art, root = shared
    sweep = root / "explicit"
    env = {
        **os.environ,
        "EGT_ARTIFACTS": str(art),
        "EGT_LOGS": str(art / "logs"),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    proc = train_py(["-m", *QUICK, "entropy=answer,sentence,mix", "selection.k=0,8", f"hydra.sweep.dir={sweep}"], env)
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = load_jobs(sweep)
    status = {(override_value(j, "entropy"), override_value(j, "selection.k")): j["status"] for j in jobs}
    assert status == {
        (e, k): "failed" if k == "0" else "completed" for e in ("answer", "sentence", "mix") for k in ("0", "8")
    }
    assert all("selection.k=0 must be >= 1" in j["error"] for j in jobs if j["status"] == "failed")

    from egt.report.__main__ import main

    assert main([str(sweep)]) == 1  # the failures are reported
    md = (sweep / "report" / "table4.md").read_text()
    assert md.count("FAILED job") == 3 and "| Answer |" in md
    assert "warning: selection.k" not in md  # failed jobs are not cells


def _agent_commands(sweep_file: Path) -> list[list[str]]:
    """The commands ``wandb agent`` would run for the grid, built with wandb's own helpers."""
    import itertools

    import yaml
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    conf = yaml.safe_load(sweep_file.read_text())
    assert conf["method"] == "grid" and conf["metric"] == {"name": "eval/headline", "goal": "maximize"}
    names = list(conf["parameters"])
    out = []
    for values in itertools.product(*(conf["parameters"][n]["values"] for n in names)):
        args = sweep_utils.create_sweep_command_args({"args": {n: {"value": v} for n, v in zip(names, values)}})
        args.update(env=["/usr/bin/env"], interpreter=[sys.executable], program=[conf["program"]])
        cmd = []
        for c in sweep_utils.create_sweep_command(conf["command"]):  # as wandb_agent.Agent._command_run
            cmd += args.get(c[2:-1], []) if c.startswith("${") and c.endswith("}") else [c]
        out.append(cmd)
    return out


def test_wandb_sweep_file_commands_compose_and_one_runs(shared, tmp_path):
    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401  (registers the schema)

    cmds = _agent_commands(REPO / "sweeps" / "data_fraction.yaml")
    assert len(cmds) == 15 and all(c[:3] == ["/usr/bin/env", sys.executable, "train.py"] for c in cmds)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for cmd in cmds:  # every grid point composes
            cfg = compose("config", overrides=cmd[3:])
            assert cfg.selection.name == "entropy" and cfg.selection.k is None and cfg.model.name == "demo"
    # one grid point runs under a (fake) agent's environment, at the tiny scale
    art, _ = shared
    cmd = [a if a != "experiment=small" else "experiment=[small,quick]" for a in cmds[-1]]
    env = {
        **os.environ,
        "EGT_ARTIFACTS": str(art),
        "EGT_LOGS": str(tmp_path / "logs"),
        "WANDB_MODE": "offline",
        "WANDB_SWEEP_ID": "smoke",
        "WANDB_RUN_ID": "smokerun1",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        cmd + ["eval.order=official", f"hydra.run.dir={tmp_path}/run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "job.json").read_text())
    assert override_value(rec, "selection.fraction") == "1.0" and rec["params"]["rl.seed"] == 2
    assert list((tmp_path / "logs" / "wandb").glob("offline-run-*-smokerun1"))  # the metric went to the agent's run


def test_methods_quick_ends_with_one_table_and_the_report_has_the_cost_table(shared):
    """experiment=methods_quick on the tiny model, two methods (a ranking and a sampled-probe one sharing
    nothing but the SFT judge), two updates each: the closing table lists both, the report adds the methods
    table, the cost table and the accuracy-against-cost figure."""
    art, root = shared
    d = root / "methods"
    with one_thread():
        out = cli(
            art,
            "experiment=[quick,methods_quick]",
            "method=egt,random",
            "rl.max_steps=2",
            "eval.order=official",
            f"hydra.sweep.dir={d}",
        )
    jobs = load_jobs(d)
    assert sorted(override_value(j, "method") for j in jobs) == ["egt", "random"]
    assert all(j["status"] == "completed" for j in jobs)
    rl = [j["stages"]["rl"]["summary"] for j in jobs]
    assert all(s["optimizer_steps"] == 2 * 2 and s["train_seconds"] > 0 and s["prompts_generated"] == 8 for s in rl)
    table = (d / "methods_quick.md").read_text()
    assert "| EGT (answer entropy) |" in table and "| Random |" in table and "one seed" in table.lower()
    assert "| method | kept | flipped kept % (pool %) | bench Overall % | method CPU s |" in out
    from egt.report.__main__ import main

    assert main([str(d)]) == 0
    cost = (d / "report" / "methods_cost.md").read_text()
    assert "| EGT (answer entropy) | 10 |" in cost  # 15% of the quick pool's 64
    assert "| Method | Reasoning |" in (d / "report" / "methods.md").read_text()
    assert (d / "report" / "methods_cost.png").read_bytes()[:4] == b"\x89PNG"
    assert (d / "report" / "methods_noise.png").read_bytes()[:4] == b"\x89PNG"  # the synthetic world's flipped labels
