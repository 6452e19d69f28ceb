"""The real CLI under torchrun with two CPU processes (gloo) on the tiny model: every stage runs
rank-aware, SFT and RL keep the ranks' parameters identical (gradients synced), the sharded probe and
evaluation merge into exactly what one process writes."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from cli_runner import QUICK, cli, done, train_py
from torchrun_runner import SMALL, kill_at_checkpoint, success, torchrun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    art = tmp_path_factory.mktemp("ddp")
    out = torchrun(art, *QUICK, "trainer=ddp", *SFT_RESUMABLE, *SMALL)
    return art, out


# SFT long enough for the kill test to stop it after a checkpoint (24 steps, last.ckpt every 3); its
# uninterrupted run is the fixture's SFT (the same key)
SFT_RESUMABLE = ["sft.epochs=3", "sft.checkpoint_every_n_steps=3"]


def test_whole_pipeline_under_torchrun(ddp_run):
    art, out = ddp_run
    assert "distributed: 2 processes (1 nodes × 2) via torchrun, backend gloo" in out
    for stage in ("data", "distill", "sft", "probe", "select", "rl"):
        assert len(done(art, stage)) == 1, stage  # computed once, whatever the number of ranks
    assert len(done(art, "eval")) == 2  # sft and rl on the synthetic bench


def test_sft_and_rl_parameters_equal_across_ranks(ddp_run):
    art, out = ddp_run
    for stage in ("sft", "rl"):
        summary = success(done(art, stage)[0])
        assert summary["processes"] == 2 and summary["params_in_sync"] is True, summary
        assert f"{stage}: parameters identical on all 2 ranks" in out
    rl = success(done(art, "rl")[0])
    assert rl["steps"] >= 2 and rl["optimizer_steps"] == 2 * rl["steps"]  # quick: num_mini_batches=2


def test_sharded_probe_and_eval_equal_one_process(ddp_run, tmp_path):
    art, _ = ddp_run
    (probe_dir,) = done(art, "probe")
    assert len(list((probe_dir / "shards").glob("*.parquet"))) == 4 and success(probe_dir)["processes"] == 2
    sft_model = done(art, "sft")[0] / "model"
    one = tmp_path / "one"
    cli(one, *QUICK, *SMALL, "stages=[probe,eval]", f"probe.model_path={sft_model}", f"eval.model_path={sft_model}")
    (single_probe,) = done(one, "probe")
    pd.testing.assert_frame_equal(
        pd.read_parquet(probe_dir / "probe.parquet"), pd.read_parquet(single_probe / "probe.parquet")
    )
    sharded = next(
        json.loads((d / "metrics.json").read_text())
        for d in done(art, "eval")
        if json.loads((d / "metrics.json").read_text())["model"]["label"] == "sft"
    )
    (single_eval,) = done(one, "eval")
    single = json.loads((single_eval / "metrics.json").read_text())
    assert sharded["run"]["processes"] == 2 and sharded["metrics"] == single["metrics"]


def test_devices_without_a_launcher_gives_the_torchrun_command(tmp_path):
    env = {**os.environ, "EGT_ARTIFACTS": str(tmp_path)}
    proc = train_py([*QUICK, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={tmp_path}/run"], env)
    assert proc.returncode != 0
    assert "python -m torch.distributed.run --nproc_per_node=2 train.py" in proc.stderr


def test_killed_ddp_sft_resumes_to_the_same_model(ddp_run, tmp_path):
    """kill -9 of the launcher and both workers mid-SFT; the rerun resumes from last.ckpt and ends with the
    weights of the uninterrupted two-process run (the fixture's SFT: the same config, the same key)."""
    import torch
    from safetensors.torch import load_file

    args = [*QUICK, "trainer=ddp", "stages=[data,distill,sft]", *SFT_RESUMABLE, *SMALL]
    killed = tmp_path / "killed"
    kill_at_checkpoint(torchrun(killed, *args, popen=True), killed, "sft")
    assert "[sft] resuming from" in torchrun(killed, *args)
    (a,), (b,) = done(killed, "sft"), done(ddp_run[0], "sft")
    assert a.name == b.name  # the same key: the same config
    sa, sb = success(a), success(b)
    assert sa["steps"] == sb["steps"] == 24 and sa["resumed"] and not sb["resumed"] and sa["params_in_sync"]
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
