"""Eqs. 3–4 on hand-worked distributions; chunked == unchunked; the vocabulary-blocked head against a
float64 reference; masks."""

import math

import pytest
import torch

from egt.probe.entropy import (
    answer_entropy,
    blocked_entropy,
    chunked_entropy_from_hidden,
    logits_entropy,
    sentence_entropy,
    token_entropy,
)


def test_uniform_is_log_v():
    for v in (2, 7, 151_936):
        assert token_entropy(torch.zeros(v)).item() == pytest.approx(math.log(v), rel=1e-5)


def test_one_hot_is_zero_even_with_minus_inf():
    z = torch.full((5,), -float("inf"))
    z[2] = 3.0
    assert token_entropy(z).item() == 0.0
    assert token_entropy(torch.tensor([1e4, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_known_three_way_distribution():
    p = torch.tensor([0.5, 0.25, 0.25])  # H = 1.5 log 2
    assert token_entropy(p.log()).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)
    assert token_entropy(p.log() + 123.0).item() == pytest.approx(1.5 * math.log(2), abs=1e-5)  # shift-invariant


def test_half_precision_logits_are_computed_in_fp32():
    z = torch.randn(4, 1000)
    assert torch.allclose(token_entropy(z.bfloat16()), token_entropy(z.bfloat16().float()))
    assert token_entropy(z.half()).dtype == torch.float32


@pytest.mark.parametrize("L,chunk", [(1, 1), (7, 3), (33, 8), (64, 64), (50, 1000)])
def test_chunked_equals_unchunked(L, chunk):
    g = torch.Generator().manual_seed(L)
    hidden = torch.randn(3, L, 16, generator=g)
    head = torch.nn.Linear(16, 501, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(501, 16, generator=g) * 2)
        full = token_entropy(head(hidden))  # [3, L]
        chunked = chunked_entropy_from_hidden(hidden, head, chunk=chunk)
    assert torch.allclose(full, chunked, atol=1e-5)


def _entropy64(z):
    """Entropy in float64.  [N, V] → [N]"""
    logp = torch.log_softmax(z.double(), -1)
    return -(logp.exp() * logp).sum(-1)


def _reference(h, w, b=None):
    """Entropy in float64 from float64 logits.  [N, H] → [N]"""
    return _entropy64(h.double() @ w.double().T + (0 if b is None else b.double()))


@pytest.mark.parametrize("scale", [0.0, 1.0, 30.0, 1000.0])  # uniform, flat, trained-like, one-hot
def test_blocked_entropy_is_exact_against_float64(scale):
    g = torch.Generator().manual_seed(1)
    h, b = torch.randn(6, 16, generator=g), torch.randn(3001, generator=g)
    w = torch.randn(3001, 16, generator=g) * scale / 16**0.5
    ref = _reference(h, w)
    for block in (7, 512, 3001, 10_000, None):  # a ragged last block, one block, wider than V, the default
        assert torch.allclose(blocked_entropy(h, w, vocab_block=block).double(), ref, atol=1e-5, rtol=0), block
    assert torch.allclose(blocked_entropy(h, w, b, vocab_block=700).double(), _reference(h, w, b), atol=1e-5, rtol=0)
    if scale == 0.0:
        assert torch.allclose(ref, torch.full_like(ref, math.log(3001)))


def test_blocked_entropy_rescales_when_the_max_moves_to_a_later_block():
    """Row 0's logits rise over the vocabulary, so every block raises its running max (m, S, T rescaled
    each time); row 1's fall, so the first block holds it."""
    w = torch.stack([torch.linspace(-40, 40, 3001), torch.linspace(40, -40, 3001)]).T  # [V, 2]: rising, falling
    h = torch.eye(2)
    assert torch.allclose(blocked_entropy(h, w, vocab_block=64).double(), _reference(h, w), atol=1e-6, rtol=0)


def test_logits_entropy_is_blocked_entropy_on_the_same_logits():
    g = torch.Generator().manual_seed(2)
    h, w = torch.randn(5, 16, generator=g), torch.randn(3001, 16, generator=g)
    assert torch.equal(logits_entropy(h @ w.T, vocab_block=256), blocked_entropy(h, w, vocab_block=256))


def test_a_long_block_keeps_its_digits():
    """One block of Qwen's 151,936 logits: the entropy arithmetic adds < 2e-6 to the logits' own rounding
    (a dot product over the row instead of a cascaded sum lost ~1e-4 here)."""
    z = torch.randn(4, 151_936, generator=torch.Generator().manual_seed(4)) * 3
    assert (logits_entropy(z, vocab_block=151_936).double() - _entropy64(z)).abs().max() < 2e-6


def test_chunked_blocks_a_plain_linear_head_like_any_other_head():
    g = torch.Generator().manual_seed(3)
    hidden, head = torch.randn(2, 9, 16, generator=g), torch.nn.Linear(16, 3001)
    with torch.no_grad():
        head.weight.copy_(torch.randn(3001, 16, generator=g) * 3)
        ref = _reference(hidden.reshape(18, 16), head.weight, head.bias).view(2, 9)
        called = chunked_entropy_from_hidden(hidden, lambda x: head(x), chunk=4)  # not an nn.Linear: [4, V] logits
    blocked = chunked_entropy_from_hidden(hidden, head, chunk=4, vocab_block=300)  # grad mode, trainable head
    assert torch.allclose(blocked.double(), ref, atol=1e-5, rtol=0) and torch.allclose(called.double(), ref, atol=1e-5)


def test_masked_positions_are_skipped_and_zero():
    hidden = torch.randn(2, 5, 8)
    calls = []

    def head(h):
        calls.append(h.shape[0])
        return h @ torch.ones(8, 11)

    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    out = chunked_entropy_from_hidden(hidden, head, mask, chunk=2)
    assert sum(calls) == 5 and max(calls) <= 2
    assert (out[~mask] == 0).all()


def test_answer_entropy_picks_position_and_inf_without_answer():
    ent = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    out = answer_entropy(ent, torch.tensor([2, -1]))
    assert out[0].item() == pytest.approx(0.3) and math.isinf(out[1].item())


def test_sentence_entropy_is_masked_mean():
    ent = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    out = sentence_entropy(ent, mask)
    assert out[:2].tolist() == [1.5, 3.0] and math.isinf(out[2].item())


@pytest.mark.parametrize("bias", [False, True])
def test_bf16_hidden_and_head_give_the_fp32_entropy_of_their_logits(bias):
    """Under bf16 the head runs in fp32 from the bf16 values (docs/design.md §3.1): rounding the logits
    to bf16 first moves low entropies at Qwen-like logit scales (top logit ~30) by ~10%."""
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(64, 3000, bias=bias).to(torch.bfloat16)
    with torch.no_grad():
        head.weight.copy_(torch.randn(3000, 64, generator=g) * 0.02)
    z0 = torch.randn(32, 64, generator=g) @ head.weight.float().t()
    hidden = (torch.randn(32, 64, generator=g) * (30.0 / z0.amax(-1, keepdim=True))).to(torch.bfloat16)
    exact = head.weight.double() @ hidden.double().t()  # [V, N]: the logits of the bf16 values, fp64
    if bias:
        exact = exact + head.bias.double().unsqueeze(-1)
    lp = exact.t().log_softmax(-1)
    ref = -(lp.exp() * lp).sum(-1)  # [N]
    got = chunked_entropy_from_hidden(hidden.unsqueeze(0), head, chunk=7, vocab_block=512)[0]
    # fp32 accumulation over H = 64 products and V = 3000 terms: ~1e-6 relative, far below bf16's 2^-8
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-6)
