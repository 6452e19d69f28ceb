"""egt.rl.packing (rl.packing=true): padding-free packed rows in RL's log-prob passes give the full pass's
log-probs, entropies and GRPO-loss gradients (fp32, to 1e-5) with gradient checkpointing on, on the tiny
Qwen2.5-VL and the Qwen2.5-VL-7B replica: groups (shared prompt) or sequences per unit, one unit per row or
several up to a token budget, G = 3 and 4 in one batch, images, completions of very different lengths; under sdpa
and eager (a 4D mask) and egt_varlen (prefix-grouped varlen sequences, the reference kernel; against sdpa)."""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from egt.data.encode import ChatEncoder
from egt.models.loader import load_model_and_processor
from egt.models.resolve import enable_checkpointing
from egt.rl.packing import PassTokens, pack_layout, packed_hidden
from egt.rl.rollout import logprobs_and_entropy, prompt_runs
from rl_passes import build_replica, grpo_pass, load_with_attention


@pytest.fixture(scope="module")
def replica_dir(tmp_path_factory):
    return build_replica(tmp_path_factory.mktemp("replica") / "model")


LENGTHS = [12, 2, 7, 1, 12, 3, 9]  # G = 3 then G = 4; stop after 1 … 12 of L = 12 tokens


def test_layout_of_two_groups_in_one_row_by_hand():
    """Prompts of 2 (one left pad: 1 real) and 2 real, L = 3; group 0 = rows 0-1 (lengths 2, 1), group 1 =
    row 2 (length 3). Units of 1 + 2 + 1 = 4 and 2 + 3 = 5 tokens: budget 10 puts both in one row of 9."""
    prompt = torch.tensor([[0, 1], [1, 1]])
    comp = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    lay = pack_layout([2, 1], prompt, comp, shared=True, max_tokens=10)
    assert lay.tokens == 9 and lay.mask().shape == (1, 9, 9)
    # columns: p0 | c0 c0 | c1 | p1 p1 | c2 c2 c2
    assert lay.prompt.tolist() == [[0, -1, -1, -1, 1, 1, -1, -1, -1]]
    assert lay.prompt_col.tolist() == [[1, -1, -1, -1, 0, 1, -1, -1, -1]]
    assert lay.comp_row.tolist() == [[-1, 0, 0, 1, -1, -1, 2, 2, 2]]
    assert lay.comp_col.tolist() == [[-1, 0, 1, 0, -1, -1, 0, 1, 2]]
    assert lay.src_row.tolist() == [0, 0, 0]
    assert lay.src_col.tolist() == [[0, 1, 0], [0, 0, 0], [5, 6, 7]]  # row 1's token 1, 2 are masked: any column
    assert lay.mask()[0].int().tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 1, 0, 0, 0, 0, 0],  # c1 sees the prompt, not c0
        [0, 0, 0, 0, 1, 0, 0, 0, 0],  # group 1 never sees group 0
        [0, 0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 1],
    ]


def test_layout_of_sequences_and_a_budget_by_hand():
    """Unshared: one unit per row [prompt | c_i], lengths 1+2, 1+1, 2+3 = 3, 2, 5; budget 5 → best fit
    decreasing: [5] then 3, then 2 fits beside 3: rows [[0, 1], [2]] of width 5, the first with no tail."""
    prompt = torch.tensor([[0, 1], [1, 1]])
    comp = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    lay = pack_layout([2, 1], prompt, comp, shared=False, max_tokens=5)
    assert lay.units == [[0], [1], [2]] and lay.order == [0, 1, 2] and lay.tokens == 10
    assert lay.comp_row.tolist() == [[-1, 0, 0, -1, 1], [-1, -1, 2, 2, 2]]
    assert lay.mask()[0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],  # row 1's own copy of prompt 0: nothing of sequence 0
        [0, 0, 0, 1, 1],
    ]
    assert lay.src_col.tolist()[1] == [3, 3, 3]  # its first token from its own prompt's last column
    with pytest.raises(ValueError, match="not a prefix"):
        pack_layout([2, 1], prompt, torch.tensor([[1, 0, 1], [1, 0, 0], [1, 1, 1]]), False, None)


def test_layout_of_an_empty_completion_by_hand():
    """A completion of length 0 (an all-zero mask row, a prefix too; the full pass takes it and gives 0s):
    no column of its own, its read-out points at its prompt's last token (never read: masked), and its
    unit is the prompt alone when unshared. Prompt of 2 real tokens, completions of 2 and 0 of L = 2."""
    prompt, comp = torch.tensor([[1, 1]]), torch.tensor([[1, 1], [0, 0]])
    lay = pack_layout([2], prompt, comp, shared=True, max_tokens=None)
    assert lay.comp_row.tolist() == [[-1, -1, 0, 0]] and lay.tokens == 4
    assert lay.src_row.tolist() == [0, 0] and lay.src_col.tolist() == [[1, 2], [1, 1]]
    lay = pack_layout([2], prompt, comp, shared=False, max_tokens=None)  # rows [p p c0 c0], [p p – –]
    assert lay.comp_row.tolist() == [[-1, -1, 0, 0], [-1, -1, -1, -1]] and lay.tokens == 6
    assert lay.src_row.tolist() == [0, 1] and lay.src_col.tolist() == [[1, 2], [1, 1]]
    assert lay.mask()[1].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]  # tail: self


def _rollout(proc, world_small):
    """Two prompts with images (different lengths), G = 3 and 4, completions of 1 … 12 tokens."""
    enc = ChatEncoder(proc)
    uniq = [enc.encode_prompt(r) for r in world_small["rl_pool"].select(range(2))]
    assert all("pixel_values" in u for u in uniq) and len(uniq[0]["input_ids"]) != len(uniq[1]["input_ids"])
    feats = [uniq[0]] * 3 + [uniq[1]] * 4
    ids = torch.randint(10, 500, (len(feats), max(LENGTHS)), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]).long()
    return feats, ids, mask, proc.tokenizer.pad_token_id


def _budget(feats, mask, shared, budget):
    """None: one unit per row; "all": every unit in one row; "half": several rows of several units."""
    if budget is None:
        return None
    real = [len(f["input_ids"]) for f in feats]
    total = (real[0] + real[3] + int(mask.sum())) if shared else sum(real) + int(mask.sum())
    return total if budget == "all" else total // 2 + max(real) + max(LENGTHS)


CASES = [
    ("tiny", "sdpa", True, None),
    ("tiny", "sdpa", True, "all"),
    ("tiny", "sdpa", False, None),
    ("tiny", "sdpa", False, "half"),
    ("tiny", "eager", True, "all"),
    ("tiny", "eager", False, "half"),
    ("replica", "sdpa", True, "all"),
    ("replica", "sdpa", False, "half"),
    ("tiny", "egt_varlen", True, "all"),
    ("tiny", "egt_varlen", False, "half"),
    ("replica", "egt_varlen", True, "all"),
]


@pytest.mark.parametrize(("which", "attn", "shared", "budget"), CASES)
@pytest.mark.usefixtures("restore_varlen")
def test_packing_equals_the_full_pass_under_checkpointing(which, attn, shared, budget, request, world_small):
    path = request.getfixturevalue("tiny_model_dir" if which == "tiny" else "replica_dir")
    model, proc = load_with_attention(path, attn)
    enable_checkpointing(model)
    model.train()
    feats, ids, mask, pad = _rollout(proc, world_small)
    max_tokens = _budget(feats, mask, shared, budget)
    lay = pack_layout(prompt_runs(feats), *_prompt_masks(feats), mask, shared, max_tokens)
    units_per_row = [len({int(u) for u in row[row >= 0]}) for row in lay.prompt]  # prompt copies per row
    if budget is not None:
        assert max(units_per_row) >= 2  # units really share a row (blocked attention is exercised)
    mode = "packed" if shared else False
    counts = PassTokens()
    with torch.enable_grad():
        assert packed_hidden(model, feats, ids, mask, pad, shared, max_tokens, counts) is not None
    assert counts.tokens == lay.tokens and counts.positions == lay.prompt.numel()  # R rows × W columns
    lp, ent, g = _pass(model, feats, ids, mask, pad, shared_prompt=mode, packing=True, packing_max_tokens=max_tokens)
    if attn == "egt_varlen":  # the reference: the full pass under sdpa (egt_varlen's prefix groups, not a mask)
        model.set_attn_implementation("sdpa")
    lp_full, ent_full, g_full = _pass(model, feats, ids, mask, pad)
    m = mask.bool()
    torch.testing.assert_close(lp[m], lp_full[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[m], ent_full[m], atol=1e-5, rtol=2e-6)  # as test_shared_prompt_packed
    assert (lp[~m] == 0).all() and (ent[~m] == 0).all()
    assert sum(x is not None for x in g) > 10
    for name, a, b in zip([n for n, p in model.named_parameters() if p.requires_grad], g, g_full):
        assert (a is None) == (b is None), name
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda s, n=name: f"{n}: {s}")


def _prompt_masks(feats):
    from egt.data.encode import collate

    runs = prompt_runs(feats)
    starts = [sum(runs[:k]) for k in range(len(runs))]
    return (collate([feats[s] for s in starts], 0, "left")["attention_mask"],)


_pass = functools.partial(grpo_pass, chunk_size=5)  # the GRPO update of test_shared_prompt_packed


@pytest.mark.parametrize("shared", [True, False])
def test_text_only_and_image_units_in_one_row_and_an_empty_completion(shared, tiny_model_dir, world_small):
    """A text-only prompt first, then two with images, sharing rows (the images must go to the vision tower
    in the rows' order, skipping the text-only unit), and one completion of length 0: the full pass's
    log-probs and entropies (no-grad, sdpa), for one unit per row, every unit in one row and two per row."""
    model, proc = load_model_and_processor(tiny_model_dir)
    enc = ChatEncoder(proc)
    rows = [world_small["rl_pool"][i] for i in range(3)]
    uniq = [enc.encode_prompt(r) for r in [dict(rows[0], images=[]), rows[1], rows[2]]]
    assert [("pixel_values" in u) for u in uniq] == [False, True, True]
    feats = [uniq[0]] * 2 + [uniq[1]] * 3 + [uniq[2]] * 2
    lengths = [6, 0, 3, 1, 6, 2, 5]
    ids = torch.randint(10, 500, (7, 6), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(6)[None] < torch.tensor(lengths)[:, None]).long()
    pad = proc.tokenizer.pad_token_id
    two = 2 * max(len(u["input_ids"]) for u in uniq) + (12 * 2 if shared else 12)  # ~two units a row
    (prompt_mask,) = _prompt_masks(feats)
    for budget, n_rows in ((10**6, 1), (two, 2 if shared else 4)):  # the text-only unit first in a row
        lay = pack_layout(prompt_runs(feats), prompt_mask, mask, shared, budget)
        assert lay.prompt.shape[0] == n_rows and int(lay.prompt[0, 0]) == 0, budget
    mode = "packed" if shared else False
    with torch.no_grad():
        ref, ent_ref = logprobs_and_entropy(model, feats, ids, mask, pad, with_entropy=True)
        for budget in (None, 10**6, two):
            lp, ent = logprobs_and_entropy(
                model,
                feats,
                ids,
                mask,
                pad,
                with_entropy=True,
                shared_prompt=mode,
                packing=True,
                packing_max_tokens=budget,
            )
            m = mask.bool()
            torch.testing.assert_close(lp[m], ref[m], atol=1e-5, rtol=0)
            torch.testing.assert_close(ent[m], ent_ref[m], atol=1e-5, rtol=2e-6)
            assert (lp[1] == 0).all() and (ent[1] == 0).all()


def test_no_grad_micro_batches_count_their_tokens(tiny_model_dir, world_small):
    """The π_old / π_ref passes in micro-batches of 4 rows (the G = 4 group cut: runs [3, 1] then [3]):
    the full pass's log-probs, and the counts are the real tokens of each micro-batch's units."""
    model, proc = load_model_and_processor(tiny_model_dir)
    feats, ids, mask, pad = _rollout(proc, world_small)
    counts, full = PassTokens(), PassTokens()
    with torch.no_grad():
        ref, _ = logprobs_and_entropy(model, feats, ids, mask, pad, counts=full)
        lp, _ = logprobs_and_entropy(
            model, feats, ids, mask, pad, batch_size=4, shared_prompt="packed", packing=True, counts=counts
        )
    torch.testing.assert_close(lp[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)
    p0, p1 = len(feats[0]["input_ids"]), len(feats[3]["input_ids"])
    assert counts.tokens == (p0 + p1 + sum(LENGTHS[:4])) + (p1 + sum(LENGTHS[4:]))  # prompt 1 twice: cut
    assert full.tokens == 3 * p0 + 4 * p1 + sum(LENGTHS)
    assert full.positions == 7 * (max(p0, p1) + max(LENGTHS)) > counts.positions >= counts.tokens


def test_packing_with_the_cache_path_is_refused(tiny_model_dir, world_small):
    model, proc = load_model_and_processor(tiny_model_dir)
    feats, ids, mask, pad = _rollout(proc, world_small)
    with pytest.raises(ValueError, match="rl.packing=true packs rl.shared_prompt_pass=packed or false"):
        logprobs_and_entropy(model, feats, ids, mask, pad, shared_prompt="cache", packing=True)


def test_it_falls_back_for_an_attention_that_may_ignore_the_mask(tiny_model_dir, world_small, caplog):
    """An attention implementation outside sdpa/eager: packing declines, says why once, the rows run unpacked."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    import egt.rl.rollout as rollout_mod

    AttentionInterface.register("egt_test_other", sdpa_attention_forward)
    AttentionMaskInterface.register("egt_test_other", sdpa_mask)
    model, proc = load_model_and_processor(tiny_model_dir)
    model.set_attn_implementation("egt_test_other")
    feats, ids, mask, pad = _rollout(proc, world_small)
    rollout_mod._warned.clear()
    counts = PassTokens()
    with caplog.at_level(logging.INFO, logger="egt.rl.packing"), torch.no_grad():
        lp, _ = logprobs_and_entropy(model, feats, ids, mask, pad, packing=True, counts=counts)
        logprobs_and_entropy(model, feats, ids, mask, pad, packing=True)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rl.packing")]
    assert len(said) == 1 and "'egt_test_other'" in said[0] and "running unpacked rows" in said[0]
    assert counts.positions == ids.numel() + 7 * max(len(f["input_ids"]) for f in feats)  # the full pass ran
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        ref, _ = logprobs_and_entropy(model, feats, ids, mask, pad)
    torch.testing.assert_close(lp, ref, atol=1e-6, rtol=0)


@pytest.mark.gpu
@pytest.mark.usefixtures("restore_varlen")
@pytest.mark.parametrize("attn", ["sdpa", "egt_varlen"])
@pytest.mark.parametrize("shared", [True, False])
def test_packing_on_cuda_in_bf16_under_checkpointing(shared, attn, tiny_model_dir, world_small):
    """bf16, checkpointing on, every unit in one row: the full pass's log-probs (under sdpa) to bf16 rounding,
    packed under sdpa's CUDA kernels with the rows' bool mask (memory-efficient kernel) and under egt_varlen's
    real kernel (torch's varlen_attn, else flash-attn 2) on the prefix-grouped sequences."""
    from egt.models import attention
    from egt.models.loader import load_model

    if attn == "egt_varlen":
        backend, why = attention.varlen_backend("cuda", "bfloat16")
        if backend is None:
            pytest.skip(why)
        attention.register(backend)
    _, proc = load_model_and_processor(tiny_model_dir)
    feats, ids, mask, pad = _rollout(proc, world_small)
    model = load_model(tiny_model_dir, dtype="bfloat16", attn_implementation="sdpa").cuda()
    enable_checkpointing(model)
    model.train()
    full, _ = logprobs_and_entropy(model, feats, ids, mask, pad)
    model.model.language_model.config._attn_implementation = attn  # the language model's attention only
    mode = "packed" if shared else False
    packed, _ = logprobs_and_entropy(
        model, feats, ids, mask, pad, shared_prompt=mode, packing=True, packing_max_tokens=4096
    )
    m = mask.bool().cuda()
    torch.testing.assert_close(packed[m].float(), full[m].float(), atol=0.1, rtol=0.02)  # bf16: ~3 digits
