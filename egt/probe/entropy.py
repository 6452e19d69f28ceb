"""Token entropies of a judge's output (paper §2.3, eqs. 3–4), as pure tensor functions.

Exact entropy needs all V logits of a position. With V ≈ 152k a [B, L, V] fp32
tensor is tens of GB, so :func:`chunked_entropy_from_hidden` sends the last
hidden states through the output head a chunk of positions at a time, and, for
a plain linear head, a block of vocabulary rows at a time (:func:`blocked_entropy`,
one pass over the logits with a running max as in online softmax): peak extra
memory is two [chunk, vocab_block] fp32 blocks (2 × 64 MB by default), whatever
B, L and V.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = [
    "token_entropy",
    "blocked_entropy",
    "logits_entropy",
    "entropy_scratch",
    "chunked_entropy_from_hidden",
    "answer_entropy",
    "sentence_entropy",
    "span_entropy",
]


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(z)) = −Σ_k p_k log p_k over the last axis, in fp32.  [..., V] → [...]

    Stable for any logit scale: log p = z − logsumexp(z); a −inf logit (a
    masked token) has p = 0 and contributes 0 (not NaN). ``logits`` is not modified.
    """
    return _entropy_(logits.float().clone() if logits.dtype == torch.float32 else logits.float())


def _entropy_(z: torch.Tensor) -> torch.Tensor:
    """:func:`token_entropy` that overwrites its fp32 input (one fewer [N, V] buffer)."""
    z.clamp_(min=torch.finfo(torch.float32).min)  # −inf → a finite floor, so 0 · log p is 0, not NaN
    logp = z.sub_(torch.logsumexp(z, dim=-1, keepdim=True))  # [..., V], in place
    return -(logp.exp().mul_(logp)).sum(-1)


# Elements of one [rows, vocab_block] fp32 scratch block when vocab_block is not given (64 MB; two are
# used). Few large blocks beat many small ones: each block costs a handful of kernels, and on a busy CPU
# every parallel kernel waits for its slowest thread (docs/scale.md).
BLOCK_ELEMENTS = 1 << 24


def _vocab_block(rows: int, V: int, vocab_block: int | None) -> int:
    """Vocabulary rows per block: ``vocab_block``, else as many as fill :data:`BLOCK_ELEMENTS`; at most V."""
    return min(vocab_block or max(1, BLOCK_ELEMENTS // max(rows, 1)), V)


def _blocks(n: int, block: int, device: Any, buffers: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...]:
    """Two flat fp32 scratch tensors of ≥ n × block elements (``buffers`` if given)."""
    return buffers or tuple(torch.empty(n * block, dtype=torch.float32, device=device) for _ in range(2))


def entropy_scratch(
    rows: int, V: int, device: Any, vocab_block: int | None = None
) -> tuple[int, tuple[torch.Tensor, torch.Tensor]]:
    """(vocab_block, two fp32 scratch buffers) for :func:`blocked_entropy` / :func:`logits_entropy` on
    up to ``rows`` rows, to pass to every call: reused, they cost no fresh memory pages per call."""
    vocab_block = _vocab_block(rows, V, vocab_block)
    return vocab_block, _blocks(rows, vocab_block, device, None)


def _online_update(z: torch.Tensor, e: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, ...]:
    """Fold one block of fp32 logits z [n, b] into the running (m, S, T) of :func:`blocked_entropy`
    (z is overwritten with z − m′, e is scratch of the same shape).  → (m [n, 1], S [n, 1], T [n, 1])"""
    mb = z.amax(-1, keepdim=True)  # [n, 1]
    if state is not None:
        mb = torch.maximum(state[0], mb)
    z.sub_(mb)  # z − m′ ≤ 0
    torch.exp(z, out=e)
    s = e.sum(-1, keepdim=True)  # [n, 1]
    t = z.mul_(e).sum(-1, keepdim=True)  # Σ e·(z − m′) in place, summed in cascade (a bmm dot loses digits)
    if state is None:
        return mb, s, t
    m, S, T = state
    d = m - mb  # ≤ 0
    a = d.exp()
    return mb, a * S + s, a * (T + d * S) + t


def blocked_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    vocab_block: int | None = None,
    buffers: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """H(softmax(h Wᵀ + b)) without [N, V] logits: the head applied ``vocab_block`` rows at a time.  [N, H] → [N]

    With m = max_k z_k, S = Σ_k e^{z_k − m} and T = Σ_k e^{z_k − m} (z_k − m),
    log p_k = z_k − m − log S, so H = −Σ_k p_k log p_k = log S − T / S (a sum of
    two non-negative terms: no cancellation, even at H ≈ 0). m, S and T are
    accumulated over vocabulary blocks; when the running max rises from m to m′,
    S ← a S and T ← a (T + (m − m′) S) with a = e^{m − m′} (the online-softmax
    rescaling, Milakov & Gimelshein 2018). Logits are fp32 and so is the head's
    matmul: bf16 / fp16 hidden states and weight are upcast block by block (a
    [b, H] fp32 copy of the weight block), because bf16 logits (spacing 1/8 at
    16–32) move low entropies at Qwen-like logit scales by up to ~10% (docs/design.md
    §3.1); the entropy is then exact to fp32 rounding (~1e-5) for the bf16 values. ``vocab_block``
    None: :data:`BLOCK_ELEMENTS` // N. ``buffers``: two fp32 tensors of at least
    N × vocab_block elements to reuse (else allocated).
    """
    n, V = h.shape[0], weight.shape[0]
    vocab_block = _vocab_block(n, V, vocab_block)
    buffers = _blocks(n, vocab_block, h.device, buffers)
    h = h.float()  # [N, H]; a no-op in fp32
    state = None
    for v0 in range(0, V, vocab_block):
        w = weight[v0 : v0 + vocab_block].float()  # [b, H]; a view in fp32, an fp32 copy from bf16
        z, e = (buf[: n * w.shape[0]].view(n, w.shape[0]) for buf in buffers)  # [n, b] each
        bb = None if bias is None else bias[v0 : v0 + w.shape[0]].float()
        if bb is None:
            torch.matmul(h, w.t(), out=z)  # into the reused block: no fresh [n, b] allocation
        else:
            torch.addmm(bb, h, w.t(), out=z)
        state = _online_update(z, e, state)
    return (state[1].log() - state[2] / state[1]).view(n)


def logits_entropy(
    logits: torch.Tensor, vocab_block: int | None = None, buffers: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """:func:`blocked_entropy`'s arithmetic on logits already computed (``vocab_block`` columns at a
    time, in fp32; with the same blocks the two agree to the last bit).  [N, V] → [N]

    Finite logits only (a −inf logit makes a NaN: use :func:`token_entropy` for masked logits).
    ``buffers``: two fp32 tensors of at least N × vocab_block elements to reuse (else allocated).
    """
    n, V = logits.shape
    vocab_block = _vocab_block(n, V, vocab_block)
    z_buf, e_buf = _blocks(n, vocab_block, logits.device, buffers)
    state = None
    for v0 in range(0, V, vocab_block):
        block = logits[:, v0 : v0 + vocab_block]  # [n, b]
        z, e = z_buf[: block.numel()].view_as(block), e_buf[: block.numel()].view_as(block)
        z.copy_(block)
        state = _online_update(z, e, state)
    return (state[1].log() - state[2] / state[1]).view(n)


def _plain_linear(lm_head: Any) -> bool:
    """A bare ``nn.Linear`` with materialised weights and no hooks: its weight can be used directly
    (not a quantised/LoRA subclass, not an offloaded or hooked module whose forward does more)."""
    return (
        type(lm_head) is torch.nn.Linear
        and lm_head.weight.device.type != "meta"
        and not lm_head._forward_hooks
        and not lm_head._forward_pre_hooks
        and not hasattr(lm_head, "_hf_hook")
    )


def chunked_entropy_from_hidden(
    hidden: torch.Tensor,
    lm_head: Callable[[torch.Tensor], torch.Tensor],
    mask: torch.Tensor | None = None,
    chunk: int = 2048,
    vocab_block: int | None = None,
) -> torch.Tensor:
    """Entropy of the next-token distribution at every kept position.  [B, L, H] → [B, L]

    ``lm_head`` maps hidden states [N, H] to logits [N, V] (the model's output
    embedding). Only positions where ``mask`` [B, L] is true are computed, at
    most ``chunk`` at a time; masked positions are 0 in the result. A plain
    ``nn.Linear`` head goes through :func:`blocked_entropy`: the largest
    temporaries are two [c, vocab_block] fp32 blocks, c = min(chunk, positions)
    (vocab_block None: c × vocab_block = :data:`BLOCK_ELEMENTS`, so 2 × 64 MB
    whatever B, L and V), and the head's weight is read once per chunk; its
    matmul is fp32 whatever the model's dtype. Any other callable (a quantised or
    hooked head) is applied to ``chunk`` positions at a time in its own dtype, the
    logits then cast: [chunk, V] fp32.
    Not differentiable (a measurement: both paths work in place).
    """
    if chunk < 1 or (vocab_block is not None and vocab_block < 1):
        raise ValueError(f"chunk and vocab_block must be >= 1, got {chunk} and {vocab_block}")
    B, L, _ = hidden.shape
    keep = torch.ones(B, L, dtype=torch.bool, device=hidden.device) if mask is None else mask.bool()
    idx = keep.reshape(-1).nonzero().squeeze(-1)  # [N] flat positions to compute
    flat_h = hidden.reshape(B * L, -1)  # [B*L, H] (a view)
    out = torch.zeros(B * L, dtype=torch.float32, device=hidden.device)
    blocked = _plain_linear(lm_head)
    if blocked:
        vocab_block, buffers = entropy_scratch(
            min(chunk, idx.numel()), lm_head.weight.shape[0], hidden.device, vocab_block
        )
    for start in range(0, idx.numel(), chunk):
        pos = idx[start : start + chunk]  # [c]
        if blocked:
            with torch.no_grad():  # out= into reused buffers: a measurement, not differentiable
                out[pos] = blocked_entropy(flat_h[pos], lm_head.weight, lm_head.bias, vocab_block, buffers)  # [c]
        else:
            out[pos] = _entropy_(lm_head(flat_h[pos]).float())  # [c, V] → [c]
    return out.view(B, L)


def answer_entropy(entropy: torch.Tensor, answer_index: torch.Tensor) -> torch.Tensor:
    """Eq. 3: the entropy at the position that produced the answer digit.  ([B, G], [B]) → [B]

    ``answer_index`` is the generated-token index of the digit, −1 where no
    answer digit was generated: those rows get +inf (they sort last).
    """
    has = answer_index >= 0  # [B]
    at = entropy.gather(1, answer_index.clamp(min=0).unsqueeze(1)).squeeze(1)  # [B]
    return torch.where(has, at, torch.full_like(at, float("inf")))


def sentence_entropy(entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mean entropy over the generated tokens (``mask`` [B, G] true on them).  → [B]

    An empty generation (no token) gets +inf, like a missing answer.
    """
    m = mask.float()
    n = m.sum(1)  # [B]
    mean = (entropy * m).sum(1) / n.clamp(min=1)
    return torch.where(n > 0, mean, torch.full_like(mean, float("inf")))


def span_entropy(entropy: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Mean entropy over generated tokens ``[start, end)`` of each row (the reasoning tokens: eq. 4 over
    the reasoning sentence).  ([B, G], [B], [B]) → [B]

    An empty span (``end <= start``, e.g. −1/−1 for an output without reasoning) gets NaN: no reasoning
    is missing data, not certainty (+inf) and not zero entropy.

    >>> span_entropy(torch.tensor([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]), torch.tensor([1, -1]), torch.tensor([3, -1]))
    tensor([3., nan])
    """
    pos = torch.arange(entropy.shape[1], device=entropy.device)  # [G]
    m = ((pos >= start.unsqueeze(1)) & (pos < end.unsqueeze(1))).float()  # [B, G]
    n = m.sum(1)  # [B]
    mean = (entropy * m).sum(1) / n.clamp(min=1)
    return torch.where(n > 0, mean, torch.full_like(mean, float("nan")))
