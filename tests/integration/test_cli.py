"""The real CLI (python train.py …) on the tiny model: run, reuse, re-run one stage, resume after kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cli_runner import QUICK as _QUICK
from cli_runner import REPO, cli, done, kill_when, train_py

QUICK = [*_QUICK, "stages=[data,distill,sft]"]  # the foundation's stages


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def first_run(art):
    return cli(art, *QUICK, "logger=wandb")


def test_pipeline_writes_every_artifact(first_run, art):
    for stage in ("models", "data", "distill", "sft"):
        assert len(done(art, stage)) == 1, stage
    sft = done(art, "sft")[0]
    assert (sft / "model" / "config.json").exists() and (sft / "model" / "model.safetensors").exists()
    assert (done(art, "distill")[0] / "stats.json").exists()
    summary = json.loads((sft / "_SUCCESS.json").read_text())["summary"]
    assert summary["steps"] > 0 and summary["train_loss_last"] < summary["train_loss_first"]
    assert "egt pipeline summary" in first_run and str(sft) in first_run
    assert list((art / "logs" / "wandb").glob("offline-run-*")), "wandb should have logged offline"


def test_second_run_reuses_everything(first_run, art):
    out = cli(art, *QUICK)
    for stage in ("models", "data", "distill", "sft"):
        assert f"[{stage}] reusing finished artifact" in out, stage
    assert "computing artifact" not in out


def test_changing_sft_lr_reruns_sft_alone(first_run, art):
    out = cli(art, *QUICK, "sft.lr=5e-4")
    assert "[data] reusing" in out and "[distill] reusing" in out
    assert "[sft] computing artifact" in out
    assert len(done(art, "sft")) == 2 and len(done(art, "data")) == 1


def test_saved_model_reloads_and_generates(first_run, art):
    from datasets import load_from_disk

    from egt.data.encode import ChatEncoder
    from egt.eval.generation import generate
    from egt.models import load_model_and_processor

    model, processor = load_model_and_processor(done(art, "sft")[0] / "model")
    bench = load_from_disk(str(done(art, "data")[0] / "dataset"))["bench"]
    outs = generate(model, ChatEncoder(processor), [bench[0], bench[1]], max_new_tokens=8, batch_size=2)
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)


@pytest.mark.slow
def test_killed_sft_resumes_to_the_same_model(tmp_path):
    args = [*QUICK, "sft.epochs=6", "sft.checkpoint_every_n_steps=3", "sft.eval_n=0", "logger=none"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    kill_when(
        cli(killed, *args, popen=True),
        lambda: any(
            not (p.parents[1] / "_SUCCESS.json").exists() for p in (killed / "sft").glob("*/checkpoints/last.ckpt")
        ),
        killed,
        "an SFT checkpoint",
    )
    assert not done(killed, "sft")
    out = cli(killed, *args)
    assert "[sft] resuming from" in out
    assert "dataloader is not resumable" not in out  # Lightning's warning: egt's sampler state is in the checkpoint
    cli(clean, *args)
    (a,), (b,) = done(killed, "sft"), done(clean, "sft")
    sa, sb = (json.loads((p / "_SUCCESS.json").read_text())["summary"] for p in (a, b))
    assert sa["steps"] == sb["steps"] and sa["resumed"] and not sb["resumed"]
    assert sa["fit_seconds_complete"] is True  # the killed attempt's seconds rode in its checkpoint (FitClock)
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_multirun_shares_upstream(tmp_path):
    out = cli(tmp_path, "-m", *QUICK, "stages=[data]", "data.world.seed=0,1", "logger=none")
    assert len(done(tmp_path, "data")) == 2, out[-2000:]


def test_bad_config_fails_before_work(tmp_path):
    env = {**os.environ, "EGT_ARTIFACTS": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "train.py", "stages=[data,distil]"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "Did you mean 'distill'" in proc.stderr + proc.stdout
    assert not (tmp_path / "data").exists()


def test_pixel_budget_reaches_every_stage_and_its_key(tmp_path):
    stages = "stages=[data,distill,sft,probe,select,rl,eval]"
    small = ["logger=none", "sft.eval_n=0", "rl.eval_n=0", "eval.optional_benchmarks=[]", "eval.limit=8"]
    cli(tmp_path, *_QUICK, stages, *small, "model.min_pixels=784", "model.max_pixels=784")  # 1 image token
    for stage in ("sft", "probe", "rl"):
        summary = json.loads((done(tmp_path, stage)[0] / "_SUCCESS.json").read_text())["summary"]
        assert summary["image_tokens_max"] == 1 and summary["image_tokens_mean"] == 1.0, stage
    for stage in ("sft", "probe", "rl", "eval"):
        saved = (done(tmp_path, stage)[0] / "_SUCCESS.json").read_text()
        assert '"max_pixels": 784' in saved, stage  # in the key's config
    # a new budget, a new SFT model (its key changed; the stages after it follow from the new upstream)
    out = cli(tmp_path, *_QUICK, "stages=[data,distill,sft]", *small, "model.min_pixels=784", "model.max_pixels=3136")
    assert "[data] reusing" in out and "[sft] computing artifact" in out


def _failing_run(tmp_path, *args, env_extra=None):
    """``python train.py *args`` as a user runs it (no debug switch unless ``env_extra`` sets one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("EGT_DEBUG", "HYDRA_FULL_ERROR")}
    env.update(
        {
            "EGT_ARTIFACTS": str(tmp_path / "art"),
            "EGT_LOGS": str(tmp_path / "logs"),
            "WANDB_MODE": "offline",
            **(env_extra or {}),
        }
    )
    return train_py([*args, "logger=none"], env, timeout=300)


def test_a_missing_model_path_is_one_line_before_any_stage(tmp_path):
    """A path the user mistyped: exit 1, one line naming the setting and the path on stderr, no
    traceback, and no stage started (no artifact for data or probe)."""
    args = ["stages=[sft,probe]", "sft.model_path=/nonexistent", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = _failing_run(tmp_path, *args)
    assert proc.returncode != 0
    assert "sft.model_path=/nonexistent does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert not (tmp_path / "art" / "probe").exists() and not (tmp_path / "art" / "data").exists()
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["status"] == "failed" and job["error"].startswith("ConfigError: sft.model_path=/nonexistent")
    debug = _failing_run(tmp_path, *args, env_extra={"EGT_DEBUG": "1"})  # the traceback on request
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_failed_multirun_job_is_recorded_and_the_others_run(tmp_path):
    proc = _failing_run(
        tmp_path,
        "-m",
        *_QUICK,
        "stages=[data]",
        "data.image_root=/nonexistent,null",
        f"hydra.sweep.dir={tmp_path / 'multi'}",
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "data.image_root=/nonexistent does not exist" in proc.stderr
    jobs = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "multi").glob("*/job.json")}
    assert jobs["0"]["status"] == "failed" and "data.image_root" in jobs["0"]["error"]
    assert jobs["1"]["status"] == "completed" and done(tmp_path / "art", "data")


def test_chdir_run_reuses_the_store_under_the_launch_directory(tmp_path):
    """hydra.job.chdir=true: relative paths (the default ``artifacts``, a data file) are the launch
    directory's, not each run directory's, so a second run reuses and a killed one resumes."""
    env = {k: v for k, v in os.environ.items() if k not in ("EGT_ARTIFACTS", "EGT_LOGS")}
    env.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

    def run(name: str) -> str:
        args = [*_QUICK, "stages=[model,data]", "hydra.job.chdir=true", f"hydra.run.dir=runs/{name}"]
        proc = train_py(args, env, cwd=tmp_path, script=str(REPO / "train.py"))
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout + proc.stderr

    run("a")
    out = run("b")
    assert "[models] reusing finished artifact" in out and "[data] reusing finished artifact" in out, out[-3000:]
    assert (tmp_path / "artifacts" / "data").is_dir() and not (tmp_path / "runs" / "b" / "artifacts").exists()
