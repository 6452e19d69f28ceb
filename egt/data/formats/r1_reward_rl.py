"""``format: r1_reward_rl``: R1-Reward's released RL set (``yifanzhang114/R1-Reward-RL``).

Columns: ``question``, ``message`` (a JSON string: one user turn whose text holds the whole judge prompt
and whose ``image`` entry holds a path on the authors' disk), ``answer`` (e.g. ``["<answer>2</answer>"]``),
``image`` (a string: base64 image bytes, a data URI, or a path). The query and both responses are
recovered from the prompt text (:func:`parse_r1_reward_prompt`), the label from ``answer``; the prompt
is then re-rendered with egt's own template (layout sources: conf/data/r1_reward_rl.yaml).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from egt.data.formats.base import DataFormat, RowRejected, nonempty, read_images

__all__ = ["R1RewardRL", "parse_r1_reward_prompt", "r1_reward_label"]


class R1RewardRL(DataFormat):
    """One R1-Reward-RL row: its judge prompt parsed back into question and responses (the question must
    equal the ``question`` column, whitespace and ``<image>`` aside), the label from ``answer``, the image
    from the ``image`` column or else the message's path. Rows are numbered (the release has no id)."""

    name = "r1_reward_rl"

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        raw = row.get("message")
        if raw is None:
            raise RowRejected("message", "missing column", "no column 'message'")
        try:
            turns = json.loads(raw) if isinstance(raw, str) else raw
            content = turns[0]["content"]
            if isinstance(content, str):  # a text-only turn (OpenAI style): the image is in the image column
                content = [{"type": "text", "text": content}]
            text = "".join(c.get("text", "") for c in content if c.get("type") == "text")
            paths = [c.get("image") for c in content if c.get("type") == "image"]
            query, r1, r2 = parse_r1_reward_prompt(text)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RowRejected("message", "unparsable R1-Reward prompt", str(exc)) from None
        question = row.get("question")
        if isinstance(question, str) and question.strip() and _words(question) != _words(query):
            raise RowRejected(
                "message", "unparsable R1-Reward prompt", "its [Question] differs from the question column"
            )
        label = r1_reward_label(row.get("answer"))
        if label is None:
            raise RowRejected("answer", "label not derivable", f"got {row.get('answer')!r}")
        image = row.get("image")
        images = read_images(image, image_root) if image else read_images(paths or None, image_root)
        return {
            "query": query,
            "response_1": nonempty(r1, "response_1"),
            "response_2": nonempty(r2, "response_2"),
            "label": label,
            "images": images,
        }


_MARK = r"(?:^|\n)[ \t]*#*[ \t]*\[{}\][ \t]*:?[ \t]*\n"
_Q, _R1, _R2 = (re.compile(_MARK.format(re.escape(m))) for m in ("Question", "Response 1", "Response 2"))
_END = re.compile(r"\n[ \t]*#*[ \t]*\*\*Output Format")


def parse_r1_reward_prompt(text: str) -> tuple[str, str, str]:
    """(question, response 1, response 2) from an R1-Reward judge prompt.

    The prompt marks its parts with lines ``[Question]``, ``[Response 1]``, ``[Response 2]`` (with
    or without leading ``#``s and a colon, as in the released inference prompt ``###### [Question]:``)
    and ends with ``**Output Format`` or the text's end; trailing spaces are stripped from each part.
    A marker line that occurs more than once (a response that quotes one) makes the split
    ambiguous: ValueError, never a guess.

    >>> t = ("Compare.\\n\\n###### **Input:**  \\n###### [Question]:\\nHow many?  \\n\\n"
    ...      "###### [Response 1]:\\nTwo.  \\n\\n###### [Response 2]:\\nThree.  \\n\\n"
    ...      "###### **Output Format (strictly follow):**  \\n<think>…</think><answer>1/2</answer>")
    >>> parse_r1_reward_prompt(t)
    ('How many?', 'Two.', 'Three.')
    """
    found = [list(m.finditer(text)) for m in (_Q, _R1, _R2)]
    for name, hits in zip(("[Question]", "[Response 1]", "[Response 2]"), found):
        if len(hits) != 1:
            raise ValueError(f"the marker line {name} occurs {len(hits)} times (expected once)")
    q, r1, r2 = (hits[0] for hits in found)
    if not (q.end() <= r1.start() and r1.end() <= r2.start()):
        raise ValueError("the markers [Question], [Response 1], [Response 2] are out of order")
    end = _END.search(text, r2.end())
    parts = (
        text[q.end() : r1.start()],
        text[r1.end() : r2.start()],
        text[r2.end() : end.start() if end else len(text)],
    )
    return tuple(p.strip() for p in parts)  # type: ignore[return-value]


def _words(text: str) -> str:
    """Whitespace-normalised text without LLaVA's ``<image>`` placeholder (compared, never kept)."""
    return " ".join(text.replace("<image>", " ").split())


def r1_reward_label(answer: Any) -> int | None:
    """1 or 2 from R1-Reward's ``answer`` (``["<answer>2</answer>"]``, "2", 2, …); None if not derivable.

    >>> r1_reward_label(["<answer>2</answer>"]), r1_reward_label("1"), r1_reward_label(["<answer>3</answer>"])
    (2, 1, None)
    """
    if isinstance(answer, (list, tuple)):
        labels = {r1_reward_label(a) for a in answer}
        return labels.pop() if len(labels) == 1 else None
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if answer in (1, 2) else None
    if isinstance(answer, str):
        m = re.fullmatch(r"\s*(?:<answer>\s*)?([12])\s*(?:</answer>)?\s*", answer)
        return int(m.group(1)) if m else None
    return None
