"""egt.rl.rollout.shared_prompt_hidden: one prompt pass per GRPO group gives the full pass's log-probs,
entropies and gradients (to fp32 rounding) on the tiny Qwen2.5-VL."""

import pytest
import torch

from egt.data.encode import ChatEncoder
from egt.models.loader import load_model_and_processor
from egt.models.resolve import enable_checkpointing
from egt.rl.functional import token_entropy, token_logprobs
from egt.rl.rollout import (
    _cache_kept_without_grad,
    completion_logits,
    logprobs_and_entropy,
    prompt_runs,
    sequence_inputs,
    shared_prompt_hidden,
)


def test_prompt_runs_follow_object_identity():
    a, b, c = {"input_ids": torch.tensor([1])}, {"input_ids": torch.tensor([1])}, {"input_ids": torch.tensor([2])}
    assert prompt_runs([a, a, b, b, b, c]) == [2, 3, 1]  # b equals a but is another prompt object
    assert prompt_runs([a]) == [1] and prompt_runs([]) == []


@pytest.fixture(scope="module")
def setup(tiny_model_dir, world_small):
    model, proc = load_model_and_processor(tiny_model_dir)
    enc = ChatEncoder(proc)
    rows = list(world_small["rl_pool"].select(range(3)))
    uniq = [enc.encode_prompt(r) for r in rows]  # prompts of different lengths: left padding differs
    feats = [uniq[0]] * 2 + [uniq[1]] * 3 + [uniq[2]]  # groups of 2, 3 and 1
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 500, (6, 9), generator=g)
    mask = torch.ones(6, 9, dtype=torch.long)
    mask[1, 4:] = 0  # stopped early
    mask[3, 1:] = 0
    return model, proc.tokenizer.pad_token_id, feats, ids, mask


def test_no_grad_logprobs_and_entropy_equal_the_full_logits_reference(setup):
    model, pad, feats, ids, mask = setup
    model.eval()
    with torch.no_grad():
        logits = completion_logits(model, sequence_inputs(feats, ids, mask, pad), ids.shape[1])  # [6, L, V]
        ref_lp, ref_ent = token_logprobs(logits, ids, 0.8), token_entropy(logits, 0.8)
        lp, ent = logprobs_and_entropy(
            model, feats, ids, mask, pad, 0.8, with_entropy=True, chunk_size=4, shared_prompt=True
        )
        lp_mb, _ = logprobs_and_entropy(model, feats, ids, mask, pad, 0.8, batch_size=4, shared_prompt=True)
    m = mask.bool()
    torch.testing.assert_close(lp[m], ref_lp[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[m], ref_ent[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(lp_mb[m], ref_lp[m], atol=1e-5, rtol=0)  # a micro-batch cuts the 3-group
    assert (lp[~m] == 0).all() and (ent[~m] == 0).all()


def test_gradients_equal_the_full_pass(setup):
    model, pad, feats, ids, mask = setup
    model.train()
    w = torch.randn(mask.shape, generator=torch.Generator().manual_seed(1)) * mask
    params = [p for p in model.parameters() if p.requires_grad]
    full, _ = logprobs_and_entropy(model, feats, ids, mask, pad, 1.0)
    g_full = torch.autograd.grad((full * w).sum(), params, allow_unused=True)
    shared, _ = logprobs_and_entropy(model, feats, ids, mask, pad, 1.0, shared_prompt=True)
    g_shared = torch.autograd.grad((shared * w).sum(), params, allow_unused=True)
    torch.testing.assert_close(shared.detach(), full.detach(), atol=1e-5, rtol=0)
    assert sum(a is not None for a in g_shared) > 0
    for a, b in zip(g_shared, g_full):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_it_declines_where_it_cannot_help_or_cannot_run(setup, tiny_model_dir):
    model, pad, feats, ids, mask = setup
    distinct = [dict(f) for f in feats]  # no row repeats its predecessor's prompt object
    assert shared_prompt_hidden(model, distinct, ids, mask, pad) is None
    ckpt, _ = load_model_and_processor(tiny_model_dir)
    enable_checkpointing(ckpt)  # as load_for_training
    ckpt.train()
    with torch.enable_grad():
        assert shared_prompt_hidden(ckpt, feats, ids, mask, pad) is None  # transformers would drop the cache
        full, _ = logprobs_and_entropy(ckpt, feats, ids, mask, pad, shared_prompt=True)  # so: the full pass
    with torch.no_grad():
        kept = shared_prompt_hidden(ckpt, feats, ids, mask, pad) is not None
        assert kept == _cache_kept_without_grad()  # no backward: transformers >= 5.24 keeps the cache
        ref, _ = logprobs_and_entropy(ckpt, feats, ids, mask, pad)
    torch.testing.assert_close(full.detach(), ref, atol=1e-5, rtol=0)
    no_mm = [{k: v for k, v in f.items() if k != "mm_token_type_ids"} for f in feats[:2]]
    no_mm = [no_mm[0], no_mm[0]]
    assert shared_prompt_hidden(model, no_mm, ids[:2], mask[:2], pad) is None


def test_before_transformers_5_24_checkpointing_declines_without_gradients_too(setup, tiny_model_dir, monkeypatch):
    """transformers 5.20 (the vllm extra's) drops the cache under checkpointing in any training-mode forward:
    there the pass declines (the full pass's numbers) instead of stopping at an empty cache."""
    import transformers

    model, pad, feats, ids, mask = setup
    ckpt, _ = load_model_and_processor(tiny_model_dir)
    enable_checkpointing(ckpt)
    ckpt.train()
    monkeypatch.setattr(transformers, "__version__", "5.20.2")
    assert not _cache_kept_without_grad()
    with torch.no_grad():
        assert shared_prompt_hidden(ckpt, feats, ids, mask, pad) is None
        got, _ = logprobs_and_entropy(ckpt, feats, ids, mask, pad, shared_prompt=True)
        ref, _ = logprobs_and_entropy(ckpt, feats, ids, mask, pad)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    monkeypatch.setattr(transformers, "__version__", "5.24.0")
    assert _cache_kept_without_grad()


@pytest.mark.gpu
@pytest.mark.parametrize("attn", ["sdpa", "flash_attention_2"])
def test_shared_prompt_on_cuda_in_bf16(setup, tiny_model_dir, attn):
    """The CUDA kernels (sdpa's masked path, flash-attn's unpadded varlen path) with a cache and
    right-padded completions: the shared pass matches the full one to bf16 rounding."""

    from egt.models.attention import flash_attn_2_version

    if attn == "flash_attention_2" and flash_attn_2_version() is None:  # by distribution (flash-attn-4 is not 2)
        pytest.skip("flash-attn is not installed")
    from egt.models.loader import load_model

    _, pad, feats, ids, mask = setup
    model = load_model(tiny_model_dir, dtype="bfloat16", attn_implementation=attn).cuda().eval()
    with torch.no_grad():  # prompt features stay on the CPU, as a rollout keeps them
        full, _ = logprobs_and_entropy(model, feats, ids, mask, pad)
        shared, _ = logprobs_and_entropy(model, feats, ids, mask, pad, shared_prompt=True)
    m = mask.bool().cuda()
    torch.testing.assert_close(shared[m].float(), full[m].float(), atol=0.1, rtol=0.02)  # bf16: ~3 digits


def test_a_cache_the_model_does_not_fill_is_an_error_not_a_wrong_answer(setup, monkeypatch):
    """A transformers version that took the cache under another name would run the completions on an
    empty cache (attending to no prompt): that must fail, not give plausible log-probs."""
    import egt.rl.rollout as rollout_mod

    model, pad, feats, ids, mask = setup
    assert rollout_mod._cache_kwarg(model.model) in ("cache", "past_key_values")
    monkeypatch.setattr(rollout_mod, "_cache_kwarg", lambda base: "a_name_the_model_ignores")
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"after the prompt pass the KV cache holds 0 positions"):
        shared_prompt_hidden(model, feats, ids, mask, pad)
