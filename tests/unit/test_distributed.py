"""egt.distributed without a process group: launcher detection, launch checks, trainer keywords,
the parameter fingerprint, and the rank-sharded sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401
from egt import distributed
from egt.config import ConfigError
from egt.data.sampler import ResumableSampler

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}


def test_detect_torchrun_slurm_and_single():
    env = distributed.detect(TORCHRUN)
    assert (env.rank, env.world_size, env.local_rank, env.num_nodes, env.launcher) == (3, 4, 1, 2, "torchrun")
    slurm = distributed.detect(
        {
            "SLURM_NTASKS": "16",
            "SLURM_PROCID": "9",
            "SLURM_LOCALID": "1",
            "SLURM_JOB_NUM_NODES": "2",
            "SLURM_JOB_NAME": "egt",
        }
    )
    assert (slurm.rank, slurm.world_size, slurm.local_world_size, slurm.num_nodes) == (9, 16, 8, 2)
    # an interactive allocation (salloc + bash) is one process, not a launch
    assert distributed.detect({"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "bash"}).world_size == 1


def test_devices_without_launcher_is_an_error_with_the_command(monkeypatch):
    monkeypatch.setattr("sys.argv", ["train.py", "trainer=ddp"])
    with pytest.raises(ConfigError, match=r"--nproc_per_node=4 --nnodes=2 .*train.py trainer=ddp"):
        distributed.check_launch(
            _cfg("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"), distributed.detect({})
        )
    distributed.check_launch(_cfg("trainer=ddp"), distributed.detect({}))  # devices=auto: one process is fine


def test_devices_must_match_the_launcher():
    with pytest.raises(ConfigError, match="write trainer.devices=2"):
        distributed.check_launch(_cfg("trainer=ddp", "trainer.devices=8"), distributed.detect(TORCHRUN))
    with pytest.raises(ConfigError, match="write trainer.num_nodes=2"):
        distributed.check_launch(_cfg("trainer=ddp", "trainer.num_nodes=3"), distributed.detect(TORCHRUN))
    distributed.check_launch(
        _cfg("trainer=ddp", "trainer.devices=2", "trainer.num_nodes=2"), distributed.detect(TORCHRUN)
    )


def test_trainer_kwargs_take_devices_from_the_launcher(monkeypatch):
    for k in TORCHRUN:
        monkeypatch.delenv(k, raising=False)
    kw = distributed.trainer_kwargs(_cfg("trainer=ddp"))
    assert (kw["devices"], kw["num_nodes"], kw["strategy"]) == (1, 1, "ddp")  # auto without a launcher: one
    for k, v in TORCHRUN.items():
        monkeypatch.setenv(k, v)
    kw = distributed.trainer_kwargs(_cfg("trainer=ddp"))
    assert (kw["devices"], kw["num_nodes"]) == (2, 2)


def test_backend_and_deepspeed_detection():
    assert distributed.backend_for(_cfg("trainer=ddp")) == ("nccl" if torch.cuda.is_available() else "gloo")
    assert distributed.backend_for(_cfg("distributed.backend=gloo")) == "gloo"
    DeepSpeedStrategy = type("DeepSpeedStrategy", (), {})
    assert distributed.is_deepspeed(DeepSpeedStrategy()) and not distributed.is_deepspeed("ddp")
    assert distributed.is_deepspeed("deepspeed_stage_3") and not distributed.is_deepspeed(None)
    # a user's subclass of Lightning's, under any name: its parameters are partitioned all the same
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.strategies import DeepSpeedStrategy as Lightnings

    MyZero3 = type("MyZero3", (Lightnings,), {})
    mine = MyZero3.__new__(MyZero3)  # not initialised: its __init__ wants DeepSpeed installed
    assert distributed.is_deepspeed(mine) and not distributed.is_deepspeed(DDPStrategy())


def test_param_fingerprint_hand_value_and_sensitivity():
    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=True))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        model[0].bias.fill_(0.5)
    assert distributed.param_fingerprint(model) == 1 * 3.0 + 2 * 0.5
    with torch.no_grad():  # swapping two values of one tensor keeps its sum; moving value between tensors does not
        model[0].bias.fill_(1.5)
        model[0].weight.copy_(torch.tensor([[0.0, 2.0]]))
    assert distributed.param_fingerprint(model) == 1 * 2.0 + 2 * 1.5
    assert distributed.check_in_sync(model, "one process") is None


def test_sharded_sampler_global_batches_are_consecutive_positions():
    n, world, local = 10, 2, 2  # global batch 4
    shards = [ResumableSampler(n, seed=1).shard(r, world) for r in range(world)]
    order = shards[0].order(0)
    locals_ = [list(s) for s in shards]
    assert all(len(x) == len(s) == 5 for x, s in zip(locals_, shards))
    for b in range(2):  # global batch b = positions 4b … 4b+3 of the epoch order, spread over the ranks
        got = sorted(i for x in locals_ for i in x[b * local : (b + 1) * local])
        assert got == sorted(order[4 * b : 4 * b + 4])
    # the tail (10 = 2·5) needs no padding; 11 samples pad by wrapping to the first position
    odd = [list(ResumableSampler(11, shuffle=False).shard(r, 2)) for r in range(2)]
    assert odd == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 0]]


def test_sharded_sampler_resumes_only_with_the_same_world_size():
    s = ResumableSampler(8, seed=0).shard(1, 2)
    s.advance(2)
    state = s.state_dict()
    again = ResumableSampler(8, seed=0).shard(1, 2)
    again.load_state_dict(state)
    assert list(again) == s.local_order(0)[2:]
    with pytest.raises(ValueError, match="written by 2 processes"):
        ResumableSampler(8, seed=0).load_state_dict(state)


def test_nothing_gpu_only_is_imported_with_the_package(tmp_path):
    """deepspeed / vllm that blow up when imported: importing egt's stages must not touch them."""
    import os
    import subprocess
    import sys

    for name in ("deepspeed", "vllm"):  # (flash_attn: transformers itself probes it when found)
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('{name} imported at module import time')\n")
    code = (
        "import egt.distributed, egt.rl.vllm_backend, egt.stages.sft, egt.stages.rl, egt.stages.probe, egt.stages.eval"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-c", "import deepspeed"], capture_output=True, text=True, env=env)
    assert "imported at module import time" in bad.stderr  # the trap works


def test_persistent_buffers_leave_out_non_persistent_ones_as_state_dict_does():
    import torch

    from egt.distributed import persistent_buffers

    class Rotary(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("inv_freq", torch.ones(2), persistent=False)
            self.register_buffer("scale", torch.ones(1))

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), Rotary())
    names = [n for n, _ in persistent_buffers(model)]
    assert names == ["1.scale"]
    assert set(names) == set(model.state_dict()) - {n for n, _ in model.named_parameters()}
