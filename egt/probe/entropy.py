"""Token entropies of a judge's output (paper §2.3, eqs. 3–4), as pure tensor functions.

Exact entropy needs all V logits of a position. With V ≈ 152k a [B, L, V] fp32
tensor is tens of GB, so :func:`chunked_entropy_from_hidden` sends the last
hidden states through the output head a chunk of positions at a time: peak
extra memory is O(chunk × V), whatever B and L.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["token_entropy", "chunked_entropy_from_hidden", "answer_entropy", "sentence_entropy", "span_entropy"]


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


def chunked_entropy_from_hidden(hidden: torch.Tensor, lm_head: Callable[[torch.Tensor], torch.Tensor],
                                mask: torch.Tensor | None = None, chunk: int = 128) -> torch.Tensor:
    """Entropy of the next-token distribution at every kept position.  [B, L, H] → [B, L]

    ``lm_head`` maps hidden states [N, H] to logits [N, V] (the model's output
    embedding). Only positions where ``mask`` [B, L] is true are computed, at
    most ``chunk`` at a time, so the largest temporary is [chunk, V] in fp32;
    masked positions are 0 in the result.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    B, L, _ = hidden.shape
    keep = torch.ones(B, L, dtype=torch.bool, device=hidden.device) if mask is None else mask.bool()
    idx = keep.reshape(-1).nonzero().squeeze(-1)  # [N] flat positions to compute
    flat_h = hidden.reshape(B * L, -1)  # [B*L, H] (a view)
    out = torch.zeros(B * L, dtype=torch.float32, device=hidden.device)
    for start in range(0, idx.numel(), chunk):
        pos = idx[start:start + chunk]  # [c]
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
