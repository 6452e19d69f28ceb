"""GPU paths on the tiny model (skipped without CUDA): bf16 + attention choice, DeepSpeed ZeRO-2/3
under torchrun, vLLM rollouts. A GPU session runs them with ``pytest -m gpu``."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from egt.models.attention import flash_attn_2_version
from cli_runner import QUICK, cli, done
from torchrun_runner import SMALL, success, torchrun

pytestmark = pytest.mark.gpu
NGPU = torch.cuda.device_count()


def test_trainer_gpu_bf16_runs_every_stage(tmp_path):
    # RL with the online curriculum: the policy re-probes (generate + exact entropies) on the GPU too
    out = cli(
        tmp_path,
        *QUICK,
        "trainer=gpu",
        "stages=[data,distill,sft,probe,select,rl,eval]",
        *SMALL,
        "curriculum=ascending_online",
        "selection.online=true",
        "rl.epochs=2",
    )
    flash = flash_attn_2_version() is not None  # by distribution: flash-attn-4 also installs flash_attn
    assert ("using flash_attention_2" if flash else "using sdpa") in out
    assert success(done(tmp_path, "sft")[0])["steps"] > 0
    rl = success(done(tmp_path, "rl")[0])
    assert rl["steps"] > 0 and rl["reprobes"] == 1  # rollouts, chunked log-probs, updates, a re-probe on the GPU
    assert done(tmp_path, "probe") and done(tmp_path, "eval")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed (egt[gpu])")
@pytest.mark.parametrize("trainer", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_sft_and_rl_save_a_loadable_model(tmp_path, trainer):
    n = min(2, NGPU)
    torchrun(tmp_path, *QUICK, f"trainer={trainer}", "stages=[data,distill,sft,probe,select,rl]", *SMALL, nproc=n)
    from egt.models.loader import load_model

    rl = success(done(tmp_path, "rl")[0])  # ZeRO-3: the policy gathered once per rollout (rl.gather_for_generation)
    assert rl["generation_path"] == ("gathered" if trainer == "deepspeed_zero3" else "plain")
    assert ("gather_s_per_rollout" in rl) == (trainer == "deepspeed_zero3")
    for stage in ("sft", "rl"):
        directory = done(tmp_path, stage)[0] / "model"
        model = load_model(directory)
        assert all(p.numel() > 0 for p in model.parameters())  # ZeRO-3 partitions were gathered before saving
        from safetensors import safe_open

        saved = set()
        for f in directory.glob("*.safetensors"):
            with safe_open(str(f), framework="pt") as handle:
                saved |= set(handle.keys())
        # exactly the keys a plain save_pretrained writes: no non-persistent buffers (rotary inv_freq)
        assert not any("inv_freq" in k for k in saved), sorted(k for k in saved if "inv_freq" in k)


@pytest.mark.skipif(NGPU < 2, reason="needs 2 GPUs")
def test_ddp_on_two_gpus_keeps_parameters_equal(tmp_path):
    torchrun(
        tmp_path, *QUICK, "trainer=gpu", "model.dtype=float32", "stages=[data,distill,sft,probe,select,rl]", *SMALL
    )
    for stage in ("sft", "rl"):
        assert success(done(tmp_path, stage)[0])["params_in_sync"] is True


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (its own environment)")
def test_vllm_rollouts(tmp_path):
    cli(tmp_path, *QUICK, "trainer=gpu", "rl.backend=vllm", "stages=[data,distill,sft,probe,select,rl]", *SMALL)
    curves = json.loads((done(tmp_path, "rl")[0] / "curves.json").read_text())
    assert curves["steps"] and all(s["rl/response_len"] > 0 for s in curves["steps"])
