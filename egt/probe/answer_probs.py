"""The probability a judge puts on each answer token (``probe.answer_probs``, beyond the paper).

At the position that produced a draw's answer digit (:func:`egt.probe.locate.answer_token_index`), the
judge's next-token distribution gives p("1") and p("2"): p_k = exp(z_k − logsumexp_v z_v) over the full
vocabulary of the **raw** output-head logits z (softmax at temperature 1, no top-k / top-p / repetition
penalty): the judge's own belief, not the distribution the draw was sampled from (``probe.temperature``
and ``probe.generation`` are sampling choices; a greedy or T = 0.7 draw from the same model has the same
p). The logits are the head's output in the model's dtype, cast to fp32 before the softmax, in both
``probe.entropy_from`` modes (so the two agree to kernel rounding).

The answer tokens are those egt's answer format gives the digits (:func:`answer_digit_ids`: the token that
holds the digit in ``format_target(…, d)``, which must be the bare digit). A draw whose answer token is not
one of them (a tokenizer that merged the digit with a neighbour in that output) or that has no answer gets
NaN for both: no guess.

Sources that use these numbers: the BIS analogue (``selection=bis``, :mod:`egt.select.bis`) and confident
learning's pred_probs (``selection=confident_learning``, :mod:`egt.select.confident`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch

from egt.data.prompt import format_target
from egt.probe.locate import answer_token_index

__all__ = ["answer_digit_ids", "logprobs_at", "draw_answer_probs", "answer_prob_columns"]


def answer_digit_ids(tok: Any) -> tuple[int, int]:
    """Token ids of the answer digits 1 and 2 as egt's answer format (``<answer>d</answer>``) tokenizes them.

    Raises ValueError when the digit is merged with a neighbour there (no single id to read p from)."""
    return _digit_ids(tok)


@lru_cache(maxsize=8)
def _digit_ids(tok: Any) -> tuple[int, int]:
    out = []
    for d in (1, 2):
        ids = tok(format_target("r", d), add_special_tokens=False)["input_ids"]
        j = answer_token_index(tok, ids)
        if j is None or tok.decode([ids[j]], skip_special_tokens=True).strip() != str(d):
            raise ValueError(
                f"probe.answer_probs: this tokenizer does not give the answer digit {d} a token of its own in "
                f"{format_target('r', d)!r}; write probe.answer_probs=false"
            )
        out.append(int(ids[j]))
    return out[0], out[1]


@torch.no_grad()
def logprobs_at(
    hidden: torch.Tensor, head: Any, where: torch.Tensor, ids: Sequence[int], chunk: int = 64
) -> torch.Tensor:
    """log p(ids) under the full softmax of ``head(hidden)`` at the positions ``where`` holds, NaN elsewhere.
    ([B, G, H], [B, G] bool) → [B, G, K]

    Only the kept positions go through the head, ``chunk`` at a time ([chunk, V] fp32 logits at most):
    the probe keeps the positions whose generated token is an answer digit, a few per output."""
    B, G, _ = hidden.shape
    out = torch.full((B * G, len(ids)), math.nan, dtype=torch.float32, device=hidden.device)
    pos = where.reshape(-1).nonzero().squeeze(-1)  # [P]
    flat = hidden.reshape(B * G, -1)  # [B*G, H] (a view)
    cols = torch.tensor(list(ids), device=hidden.device)
    for s in range(0, pos.numel(), chunk):
        p = pos[s : s + chunk]
        z = head(flat[p]).float()  # [c, V]
        out[p] = z[:, cols] - torch.logsumexp(z, -1, keepdim=True)  # [c, K]
    return out.view(B, G, len(ids))


def draw_answer_probs(logp: torch.Tensor, new: torch.Tensor, where: Sequence[int], ids: Sequence[int]) -> list:
    """Per row, [p(ids[0]), p(ids[1])] at its answer token, or [nan, nan] when it has none (``where`` −1) or
    that token is not one of ``ids``.  ([B, G, K] log-probs, [B, G] generated ids, [B]) → B lists of K floats

    >>> lp = torch.log(torch.tensor([[[0.7, 0.2], [0.1, 0.8]]]))  # one row, two positions
    >>> [[round(p, 4) for p in r] for r in draw_answer_probs(lp, torch.tensor([[5, 7]]), [1], (5, 7))]
    [[0.1, 0.8]]
    >>> draw_answer_probs(lp, torch.tensor([[5, 9]]), [1], (5, 7))  # the answer token 9 is no digit id
    [[nan, nan]]
    """
    out = []
    for i, j in enumerate(where):
        if j < 0 or int(new[i, j]) not in ids:
            out.append([math.nan] * len(ids))
        else:
            out.append(logp[i, j].exp().tolist())
    return out


def answer_prob_columns(probs: list[list[float]], label: int) -> dict[str, Any]:
    """The probe table's columns from one sample's draws: ``answer_probs`` (per draw [p1, p2], NaN where
    none), ``p_answer_1`` and ``p_label`` (means of p("1") and of p(label's digit) over the draws that have
    them; NaN when none has).

    >>> c = answer_prob_columns([[0.6, 0.3], [float("nan")] * 2, [0.2, 0.7]], label=2)
    >>> round(c["p_answer_1"], 4), round(c["p_label"], 4)
    (0.4, 0.5)
    """
    have = [p for p in probs if not math.isnan(p[0])]
    mean = (lambda xs: sum(xs) / len(xs)) if have else (lambda xs: math.nan)
    return {
        "answer_probs": probs,
        "p_answer_1": mean([p[0] for p in have]),
        "p_label": mean([p[label - 1] for p in have]),
    }
