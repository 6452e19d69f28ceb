"""Which generated tokens produced the answer digit and the reasoning (docs/design.md §2.4: by character
offsets).

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

__all__ = ["answer_token_index", "reasoning_char_span", "reasoning_token_range", "token_at_char", "token_offsets"]


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


def token_at_char(tok: Any, ids: Sequence[int], pos: int, text: str | None = None) -> int | None:
    """Index into ``ids`` of the token whose text holds character ``pos`` of ``decode(ids)``, or None.

    ``text`` is ``decode(ids)`` when the caller already has it.
    """
    text = _decode(tok, ids) if text is None else text
    if not 0 <= pos < len(text):
        return None
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


def answer_token_index(tok: Any, ids: Sequence[int], text: str | None = None) -> int | None:
    """Index into ``ids`` of the token whose text holds the answer digit, or None if no answer.

    ``text`` is ``decode(ids)`` when the caller already has it.
    """
    text = _decode(tok, ids) if text is None else text
    span = answer_char_span(text)
    return None if span is None else token_at_char(tok, ids, span[0], text)


def reasoning_token_range(tok: Any, ids: Sequence[int], text: str | None = None) -> tuple[int, int] | None:
    """Tokens ``[start, end)`` of ``ids`` that hold the reasoning (:func:`reasoning_char_span`), or None.

    A token that merges a tag with reasoning text (``'>The'``) counts as reasoning: every token holding
    at least one reasoning character is in the range.
    """
    text = _decode(tok, ids) if text is None else text
    span = reasoning_char_span(text)
    if span is None:
        return None
    first, last = token_at_char(tok, ids, span[0], text), token_at_char(tok, ids, span[1] - 1, text)
    return None if first is None or last is None else (first, last + 1)


def reasoning_char_span(text: str) -> tuple[int, int] | None:
    """Character span ``[start, end)`` of the reasoning: after ``<think>`` up to ``</think>`` (or, in an
    output cut off before ``</think>``, up to ``<answer>`` or the end); None without ``<think>`` or when
    the reasoning is empty or only whitespace.

    >>> reasoning_char_span("<think>ab</think><answer>1</answer>")
    (7, 9)
    >>> reasoning_char_span("<think>ab c")  # truncated: up to the end
    (7, 11)
    >>> reasoning_char_span("<think> </think><answer>1</answer>") is None
    True
    >>> reasoning_char_span("<answer>1</answer>") is None
    True
    """
    if text is None or "<think>" not in text:
        return None
    start = text.index("<think>") + len("<think>")
    ends = [i for i in (text.find("</think>", start), text.find("<answer>", start)) if i >= 0]
    end = min(ends) if ends else len(text)
    return (start, end) if text[start:end].strip() else None
