"""Which generated token produced the answer digit (docs/design.md §2.4: by character offsets).

The decoded output text is what gets parsed, so the digit's position is a
character offset in that text. Re-tokenising the text can give different ids
from the ones generated, so the offsets are those of the *generated* ids: the
length of ``decode(ids[:j])`` is where token j starts. A binary search needs
O(log G) decodes; it is checked against the full text and falls back to a
linear scan when a tokenizer's decode is not prefix-stable (SentencePiece
strips a leading space, clean-up merges spaces).
"""
from __future__ import annotations

from typing import Any, Sequence

from egt.data.prompt import answer_char_span, locate_answer_token

__all__ = ["answer_token_index", "token_offsets"]


def _decode(tok: Any, ids: Sequence[int]) -> str:
    return tok.decode(list(ids), skip_special_tokens=True)


def token_offsets(tok: Any, ids: Sequence[int]) -> list[tuple[int, int]]:
    """Character span [start, end) of each generated token in ``decode(ids)`` (O(G) decodes).

    A token that completes no character (half of a multi-byte character,
    a skipped special token) gets an empty span.
    """
    spans, prev = [], 0
    for j in range(len(ids)):
        end = max(prev, len(_decode(tok, ids[: j + 1])))
        spans.append((prev, end))
        prev = end
    return spans


def answer_token_index(tok: Any, ids: Sequence[int], text: str | None = None) -> int | None:
    """Index into ``ids`` of the token whose text holds the answer digit, or None if no answer.

    ``text`` is ``decode(ids)`` when the caller already has it.
    """
    text = _decode(tok, ids) if text is None else text
    span = answer_char_span(text)
    if span is None:
        return None
    pos = span[0]
    lo, hi = 0, len(ids) - 1  # smallest j with len(decode(ids[:j+1])) > pos
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_decode(tok, ids[: mid + 1])) > pos:
            hi = mid
        else:
            lo = mid + 1
    prefix = _decode(tok, ids[: lo + 1])
    before = _decode(tok, ids[:lo]) if lo else ""
    if len(prefix) > pos and len(before) <= pos and text.startswith(prefix[: pos + 1]):
        return lo
    return locate_answer_token(token_offsets(tok, ids), pos)
