"""The judge interface and what the model-based judges share (prompt, answer parsing)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping

SUPPORT, CONTRADICT, UNDECIDED = 1, -1, 0


@dataclass(frozen=True)
class JudgeItem:
    sample: Mapping[str, Any]  # the schema row (query, responses, images); never its label
    reasoning: str  # the text inside <think>…</think>
    answer: int  # the response the policy chose (1 or 2)


class LogicJudge(ABC):
    """Maps each item to +1 (the reasoning supports the answer), −1 (it contradicts it),
    0 (cannot tell) or ``None`` (the judge itself failed: counted and logged by the
    reward, which then uses R_logic = 0 for that sample)."""

    name: str = "judge"

    @abstractmethod
    def verdicts(self, items: list[JudgeItem]) -> list[int | None]: ...

    def public_config(self) -> dict[str, Any]:
        """What determines the verdicts (for artifact keys); never a secret."""
        return {"name": self.name}


def consistency_prompt(item: JudgeItem, last_lines: int = 3) -> str:
    """The R1-Reward consistency check: the end of the reasoning and the answer rewritten as
    "Response N is better"; the judge says whether the first supports the second.

    >>> p = consistency_prompt(JudgeItem({}, "Response 1 is wrong.\\nResponse 2 is right.", 2))
    >>> "Response 2 is better." in p and p.rstrip().endswith("yes or no.")
    True
    """
    lines = [ln.strip() for ln in re.split(r"(?<=[.!?])\s+|\n", item.reasoning) if ln.strip()]
    tail = " ".join(lines[-last_lines:]) if last_lines > 0 else " ".join(lines)
    return (
        "Here is the end of an analysis comparing two responses, and its conclusion.\n"
        f"[Analysis]\n{tail}\n"
        f"[Conclusion]\nResponse {item.answer} is better.\n"
        "Does the analysis support the conclusion? Reply with one word: yes or no."
    )


_YES = re.compile(r"^\W*(yes|supports?|consistent)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|not|contradicts?|inconsistent)\b", re.IGNORECASE)


def parse_consistency(text: str | None) -> int:
    """+1 for a leading yes, −1 for a leading no, 0 otherwise.

    >>> [parse_consistency(t) for t in ["Yes.", " no, it does not", "maybe", "", None]]
    [1, -1, 0, 0, 0]
    """
    if not text:
        return UNDECIDED
    if _YES.match(text):
        return SUPPORT
    if _NO.match(text):
        return CONTRADICT
    return UNDECIDED
