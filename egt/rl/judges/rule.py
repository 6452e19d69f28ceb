"""The default logic judge: the conclusion the reasoning states names the chosen response.

Two kinds of statement are read, the last one of the first kind winning:
1. an explicit verdict — "Response 2 is better", "I prefer Response 1",
   "Response 1 is worse" (→ 2);
2. otherwise, per-response assessments — "Response 1 says 3 circles, which is
   wrong. Response 2 says 2 circles, which is right." (the synthetic teacher's
   style): the response judged right while the other is judged wrong (or not
   judged) is the conclusion. "Both responses are wrong." concludes nothing.
No conclusion → 0 (undecided); the conclusion equals the answer → +1; else −1.
"""

from __future__ import annotations

import re
from typing import Any

from egt.rl.judges.base import CONTRADICT, SUPPORT, UNDECIDED, JudgeItem, LogicJudge

_BETTER = r"(?:better|best|preferred|superior|(?:more|most)\s+(?:accurate|correct|helpful))"
_WORSE = r"(?:worse|worst|inferior|less\s+(?:accurate|correct|helpful))"
_VERDICT = re.compile(
    rf"response\s*(?P<n>[12])\s+(?:is|was|seems|appears)\s+(?:(?:clearly|much|slightly|the|overall)\s+)*"
    rf"(?:(?P<better>{_BETTER})|(?P<worse>{_WORSE}))"
    rf"|(?:prefer|choose|pick|select)\s+response\s*(?P<pick>[12])",
    re.IGNORECASE,
)
_MENTION = re.compile(r"\bresponse\s*([12])\b", re.IGNORECASE)
_NEG = re.compile(
    r"\b(?:wrong|wrongly|incorrect(?:ly)?|inaccurate(?:ly)?|false|mistaken|"
    r"not\s+(?:right|correct|accurate|true))\b",
    re.IGNORECASE,
)
_POS = re.compile(r"\b(?:right|correct(?:ly)?|accurate(?:ly)?|true)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;\n]")


def _explicit(reasoning: str) -> int | None:
    last = None
    for m in _VERDICT.finditer(reasoning):
        if m.group("pick"):  # "prefer response N"
            last = int(m.group("pick"))
        else:
            n = int(m.group("n"))
            last = n if m.group("better") else 3 - n
    return last


def _assessments(reasoning: str) -> dict[int, bool]:
    """The last right (True) / wrong (False) said about each response."""
    mentions = list(_MENTION.finditer(reasoning))
    said: dict[int, bool] = {}
    for i, m in enumerate(mentions):
        end = mentions[i + 1].start() if i + 1 < len(mentions) else len(reasoning)
        stop = _SENTENCE_END.search(reasoning, m.end(), end)
        segment = reasoning[m.end() : stop.start() if stop else end]
        if _NEG.search(segment):
            said[int(m.group(1))] = False
        elif _POS.search(segment):
            said[int(m.group(1))] = True
    return said


def conclusion(reasoning: str) -> int | None:
    """The response the reasoning concludes is better, or ``None``.

    >>> conclusion("Response 1 says 3 circles, which is wrong. Response 2 says 2 circles, which is right.")
    2
    >>> conclusion("Response 1 says yes, which is right. Response 2 says no, which is wrong. Response 2 is better.")
    2
    >>> conclusion("Response 1 says red, which is right. Response 2 says red, which is right. "
    ...            "Both responses are right.")
    """
    explicit = _explicit(reasoning)
    if explicit is not None:
        return explicit
    said = _assessments(reasoning)
    good = [n for n, ok in said.items() if ok]
    bad = [n for n, ok in said.items() if not ok]
    if len(good) == 1 and good[0] not in bad:
        return good[0] if len(bad) <= 1 else None
    if not good and len(bad) == 1:
        return 3 - bad[0]
    return None


class RuleJudge(LogicJudge):
    """+1 when the reasoning's conclusion is the answer, −1 when it is the other response,
    0 when the reasoning concludes nothing. Never fails."""

    name = "rule"

    def verdicts(self, items: list[JudgeItem]) -> list[int | None]:
        out: list[int | None] = []
        for item in items:
            c = conclusion(item.reasoning)
            out.append(UNDECIDED if c is None else SUPPORT if c == item.answer else CONTRADICT)
        return out

    def public_config(self) -> dict[str, Any]:
        return {"name": self.name, "version": 1}
