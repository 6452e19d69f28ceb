"""The real CLI under torchrun inside Lightning's own DeepSpeed ZeRO-3 engine, on two CPU ranks (gloo): the
path a 7B run takes on GPUs (``trainer=deepspeed_zero3``), with only Lightning's CUDA checks lifted
(tests/helpers/deepspeed_cpu.py), with experiment=paper's training switches. SFT and RL train partitioned,
RL generates gathered once per rollout, the models save whole, and killed SFT and RL resume from DeepSpeed's
sharded checkpoints to the same weights."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_runner import QUICK, done
from torchrun_runner import SMALL, kill_at_checkpoint, success, torchrun

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed (egt[test])"),
]

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
ZERO3 = [
    "trainer=deepspeed_zero3",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "trainer.strategy._target_=deepspeed_cpu.DeepSpeedCPUStrategy",
]
# the switches experiment=paper (7B, 8 GPUs) runs with: activation checkpointing, StableReinforce, the shared
# prompt in the gradient pass, padding-free packing, gradient accumulation
PAPER = [
    "model.gradient_checkpointing=true",
    "rl=stable_reinforce",
    "rl.shared_prompt_pass=packed",
    "rl.packing=true",
    "sft.packing=true",
    "sft.accumulate_grad_batches=2",
]
SFT = ["sft.epochs=3", "sft.checkpoint_every_n_steps=3"]  # 12 optimizer steps, last.ckpt every 3
# RL with a reward that varies on the untrained judge (tests/helpers/rl_stub.py) and a KL to the reference
# model, so that updates move the weights; last.ckpt after every update
RL = [
    "reward._target_=tests.helpers.rl_stub.ShortIsGood",
    "rl.kl_coef=1e-3",
    "rl.epochs=2",
    "rl.max_steps=4",  # 3 rollout batches of the 10 samples kept per epoch: one re-probe, before epoch 1
    "rl.checkpoint_every_n_steps=1",
    "online=selection",  # the online curriculum: the policy re-probes the pool (gathered) before each epoch
]
STAGES = "stages=[data,distill,sft,probe,select,rl]"


def zero3(art: Path, *args: str, **kw):
    path = os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH")]))
    return torchrun(art, *QUICK, *ZERO3, *PAPER, *SFT, *RL, *SMALL, STAGES, *args, env={"PYTHONPATH": path}, **kw)


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory):
    art = tmp_path_factory.mktemp("zero3")
    # paths.keep_checkpoints (not in any key): the finished artifacts keep DeepSpeed's checkpoints to look at
    return art, zero3(art, "paths.keep_checkpoints=true")


def test_sft_and_rl_train_inside_lightnings_zero3_engine_and_rl_generates_gathered(zero3_run):
    art, out = zero3_run
    (sft,), (rl,) = done(art, "sft"), done(art, "rl")
    for stage in (sft, rl):
        s = success(stage)
        assert s["processes"] == 2 and s["params_in_sync"] is None, s  # partitioned: no rank holds them all
        # the ZeRO-3 save: the whole model, gathered from both ranks (full_state_dict), loads as a checkpoint
        weights = load_file(stage / "model" / "model.safetensors")
        assert weights and all(t.numel() > 0 for t in weights.values())
        # DeepSpeed's sharded checkpoint, published whole: nothing half-written beside it
        ckpt = stage / "checkpoints"
        assert sorted(p.name for p in ckpt.iterdir()) == ["last.ckpt"], list(ckpt.iterdir())
        assert (ckpt / "last.ckpt" / "latest").read_text().strip() == "checkpoint"
        shards = sorted(p.name for p in (ckpt / "last.ckpt" / "checkpoint").iterdir())
        assert shards == [
            f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")
        ]
    assert success(sft)["packing"] and "gradient checkpointing on" in out and "rl.packing: " in out
    r = success(rl)
    assert "[rl] rollouts generate on the gathered path" in out
    assert r["generation_path"] == "gathered" and r["gather_s_per_rollout"] > 0 and r["steps"] == 4
    assert [x["generation_path"] for x in r["reprobe"]] == [
        "gathered"
    ] and "re-probe 1 generated on the gathered" in out


def test_killed_zero3_sft_and_rl_resume_from_deepspeeds_checkpoints_to_the_same_models(zero3_run, tmp_path):
    """``kill -9`` once SFT's first checkpoint is published, again once RL's is (the second run resumed SFT
    first), then a run to the end: each stage resumed from DeepSpeed's shards (each rank its own part of the
    weights and optimizer state; rank 0 the sampler, RL's rollout and update counters) and ends with the
    uninterrupted run's weights, RL with the same prompts, completions and KL to the reference model."""
    art, _ = zero3_run
    killed = tmp_path / "killed"
    kill_at_checkpoint(zero3(killed, popen=True), killed, "sft")
    assert "[sft] resuming from" in kill_at_checkpoint(zero3(killed, popen=True), killed, "rl")
    assert "[rl] resuming from" in zero3(killed)
    for stage in ("sft", "rl"):
        (a,), (b,) = done(killed, stage), done(art, stage)
        assert a.name == b.name  # the same artifact key: the same config
        assert not (a / "checkpoints").exists()  # a finished artifact drops them (paths.keep_checkpoints=false)
        sa, sb = success(a), success(b)
        assert sa["steps"] == sb["steps"] and sa["resumed"] and not sb["resumed"], (sa, sb)
        wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=f"{stage}: {k}")
    ca, cb = (json.loads((done(d, "rl")[0] / "curves.json").read_text())["steps"] for d in (killed, art))
    assert [s["ids"] for s in ca] == [s["ids"] for s in cb]
    assert [s["examples"] for s in ca] == [s["examples"] for s in cb]  # the same completions were drawn
    assert [s["rl/kl"] for s in ca] == pytest.approx([s["rl/kl"] for s in cb], rel=1e-4, abs=1e-9)
    assert cb[-1]["rl/kl"] > 0  # the updates moved the policy away from the reference
