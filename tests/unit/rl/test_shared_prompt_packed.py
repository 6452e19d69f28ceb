"""egt.rl.rollout.packed_prompt_hidden (rl.shared_prompt_pass=packed): one row per GRPO group under a 4D
mask gives the full pass's log-probs, entropies and GRPO-loss gradients (fp32, to 1e-5), with gradient
checkpointing on, on the tiny Qwen2.5-VL and the Qwen2.5-VL-7B replica, with sdpa and eager attention, and with
egt_varlen's prefix-grouped sequences (the reference kernel) against the full pass under sdpa."""

from __future__ import annotations

import logging

import pytest
import torch

from egt.data.encode import ChatEncoder
from egt.models.loader import load_model_and_processor
from egt.models.resolve import enable_checkpointing
from egt.rl.rollout import (
    logprobs_and_entropy,
    packed_layout,
    packed_prompt_hidden,
    shared_prompt_hidden,
    shared_prompt_mode,
)
from rl_passes import build_replica, grpo_pass, load_with_attention

GROUPS = (3, 4)  # G = 3 and G = 4 in one batch: the G = 3 row has a masked tail


def test_layout_of_two_groups_by_hand():
    """Prompt of 2 (one left pad), L = 2, groups of 1 and 2: S = 2 + 2·2 = 6 columns per row."""
    prompt = torch.tensor([[1, 1], [0, 1]])
    comp = torch.tensor([[1, 0], [1, 1], [1, 1]])  # row 0 stops after one token
    cols, rows, allowed = packed_layout([1, 2], prompt, comp)
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [[2, 3], [2, 3], [4, 5]]
    a0 = allowed[0].int().tolist()  # group of 1: columns 4, 5 are the tail (keys masked; queries see the prompt)
    assert a0 == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],  # column 3 is padding after row 0's stop: a key of itself only
        [1, 1, 0, 0, 1, 0],
        [1, 1, 0, 0, 0, 1],
    ]
    a1 = allowed[1].int().tolist()  # left pad at column 0; c1 at 2-3, c2 at 4-5 never see each other
    assert a1[2] == [0, 1, 1, 0, 0, 0] and a1[3] == [0, 1, 1, 1, 0, 0]
    assert a1[4] == [0, 1, 0, 0, 1, 0] and a1[5] == [0, 1, 0, 0, 1, 1]


def test_mode_values_and_a_clear_error():
    assert shared_prompt_mode(True) == "cache" and shared_prompt_mode("cache") == "cache"
    assert shared_prompt_mode("packed") == "packed" and shared_prompt_mode(False) is None
    with pytest.raises(ValueError, match=r"rl.shared_prompt_pass='pack'.*cache, packed"):
        shared_prompt_mode("pack")


@pytest.fixture(scope="module")
def replica_dir(tmp_path_factory):
    return build_replica(tmp_path_factory.mktemp("replica") / "model")


def _rollout(proc, world_small):
    """Two prompts with images (different lengths: left padding differs), G = 3 and 4, completions of
    different lengths (padding after each stop token); ids drawn from ordinary text tokens."""
    enc = ChatEncoder(proc)
    uniq = [enc.encode_prompt(r) for r in world_small["rl_pool"].select(range(2))]
    assert all("pixel_values" in u for u in uniq) and len(uniq[0]["input_ids"]) != len(uniq[1]["input_ids"])
    feats = [uniq[0]] * GROUPS[0] + [uniq[1]] * GROUPS[1]
    b, length = len(feats), 7
    ids = torch.randint(10, 500, (b, length), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([7, 3, 5, 1, 7, 4, 6])
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return feats, ids, mask, proc.tokenizer.pad_token_id


ATTENTION = [("tiny", "sdpa"), ("tiny", "eager"), ("replica", "sdpa")]
ATTENTION += [("tiny", "egt_varlen"), ("replica", "egt_varlen")]  # prefix-grouped varlen sequences, reference kernel


@pytest.mark.parametrize(("which", "attn"), ATTENTION)
@pytest.mark.usefixtures("restore_varlen")
def test_packed_equals_the_full_pass_under_checkpointing(which, attn, request, world_small):
    path = request.getfixturevalue("tiny_model_dir" if which == "tiny" else "replica_dir")
    model, proc = load_with_attention(path, attn)
    enable_checkpointing(model)  # as load_for_training turns it on
    model.train()  # as the gradient pass runs it (dropout is 0 in Qwen2.5-VL)
    feats, ids, mask, pad = _rollout(proc, world_small)
    with torch.enable_grad():  # checkpointing is on: the cache path declines, the packed one runs
        assert shared_prompt_hidden(model, feats, ids, mask, pad) is None
        assert packed_prompt_hidden(model, feats, ids, mask, pad) is not None
    lp, ent, g = grpo_pass(model, feats, ids, mask, pad, 3, shared_prompt="packed")
    if attn == "egt_varlen":  # the reference: the full pass under sdpa (egt_varlen's prefix groups, not a mask)
        model.set_attn_implementation("sdpa")
    lp_full, ent_full, g_full = grpo_pass(model, feats, ids, mask, pad, 3, shared_prompt=False)
    m = mask.bool()
    torch.testing.assert_close(lp[m], lp_full[m], atol=1e-5, rtol=0)
    # entropy is a sum over V terms of ~log V nats (11.9 on the replica's 152,064 rows): fp32 rounding of
    # that sum is ~1e-6 relative, so 1e-5 absolute plus 2e-6 relative
    torch.testing.assert_close(ent[m], ent_full[m], atol=1e-5, rtol=2e-6)
    assert (lp[~m] == 0).all() and (ent[~m] == 0).all()
    assert sum(x is not None for x in g) > 10  # the vision tower and the language model get gradients
    for name, a, b in zip([n for n, p in model.named_parameters() if p.requires_grad], g, g_full):
        assert (a is None) == (b is None), name
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda s, n=name: f"{n}: {s}")


@pytest.mark.usefixtures("restore_varlen")
def test_egt_varlen_prefix_groups_stay_out_of_an_unpatched_vision_tower(tiny_model_dir, world_small):
    """transformers forwards the model's kwargs (``egt_prefix_groups`` among them) to the vision tower; a tower
    that :func:`egt.models.attention.patch_vision_tower` does not replace (Qwen2-VL's; here the tiny model's with
    the patch undone) calls the registered function per window, non-causal: the text rows' groups are not its
    sequences (they indexed past the window: IndexError), and the packed pass equals the one under sdpa."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLVisionAttention

    model, proc = load_with_attention(tiny_model_dir, "egt_varlen")
    for mod in model.modules():
        if isinstance(mod, Qwen2_5_VLVisionAttention):
            del mod.forward  # the class's forward: one registered-function call per window, is_causal=False
    feats, ids, mask, pad = _rollout(proc, world_small)
    with torch.no_grad():
        hidden, _ = packed_prompt_hidden(model, feats, ids, mask, pad)
        model.set_attn_implementation("sdpa")
        ref, _ = packed_prompt_hidden(model, feats, ids, mask, pad)
    m = mask.bool()
    torch.testing.assert_close(hidden[m], ref[m], atol=1e-5, rtol=1e-5)


def test_no_grad_packed_equals_the_full_pass_with_micro_batches(tiny_model_dir, world_small):
    """The π_old / π_ref passes: micro-batches of 4 rows cut the G = 4 group (runs [3, 1] then [3])."""
    model, proc = load_model_and_processor(tiny_model_dir)
    feats, ids, mask, pad = _rollout(proc, world_small)
    with torch.no_grad():
        ref, _ = logprobs_and_entropy(model, feats, ids, mask, pad, 1.0)
        lp, _ = logprobs_and_entropy(model, feats, ids, mask, pad, 1.0, batch_size=4, shared_prompt="packed")
    torch.testing.assert_close(lp[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)


def test_it_falls_back_for_an_attention_that_may_ignore_the_mask(tiny_model_dir, world_small, caplog):
    """An attention implementation outside sdpa/eager (here a registered copy of sdpa under another name,
    as flash_attention_* or a kernel-hub one would be): the packed path declines, logs why once, and the
    pass runs every row whole — the full pass's numbers."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    import egt.rl.rollout as rollout_mod

    AttentionInterface.register("egt_test_other", sdpa_attention_forward)
    AttentionMaskInterface.register("egt_test_other", sdpa_mask)  # its own 2D → 4D masks, as sdpa's
    model, proc = load_model_and_processor(tiny_model_dir)
    model.set_attn_implementation("egt_test_other")
    feats, ids, mask, pad = _rollout(proc, world_small)
    rollout_mod._warned.clear()
    with caplog.at_level(logging.INFO, logger="egt.rl.rollout"), torch.no_grad():
        assert packed_prompt_hidden(model, feats, ids, mask, pad) is None
        lp, _ = logprobs_and_entropy(model, feats, ids, mask, pad, shared_prompt="packed")
    said = [r.getMessage() for r in caplog.records if "shared_prompt_pass=packed" in r.getMessage()]
    assert len(said) == 1 and "'egt_test_other'" in said[0] and "running every row whole" in said[0]
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        ref, _ = logprobs_and_entropy(model, feats, ids, mask, pad)
    torch.testing.assert_close(lp, ref, atol=1e-6, rtol=0)


@pytest.mark.gpu
def test_packed_on_cuda_in_bf16_under_checkpointing(tiny_model_dir, world_small):
    """sdpa's CUDA kernels with the packed bool mask (the memory-efficient kernel takes a custom mask;
    flash does not and is not picked), bf16, checkpointing on: the full pass's log-probs to bf16 rounding."""
    from egt.models.loader import load_model

    _, proc = load_model_and_processor(tiny_model_dir)
    feats, ids, mask, pad = _rollout(proc, world_small)
    model = load_model(tiny_model_dir, dtype="bfloat16", attn_implementation="sdpa").cuda()
    enable_checkpointing(model)
    model.train()
    full, _ = logprobs_and_entropy(model, feats, ids, mask, pad)
    packed, _ = logprobs_and_entropy(model, feats, ids, mask, pad, shared_prompt="packed")
    m = mask.bool().cuda()
    torch.testing.assert_close(packed[m].float(), full[m].float(), atol=0.1, rtol=0.02)  # bf16: ~3 digits
