"""The composite reward of paper §2.4 / docs/design.md §5.1: R = R_acc · (1 + α R_logic) + β R_format.

- R_acc ∈ {0, 1}: the parsed answer equals the label; a parse failure is 0 (the
  R1-Reward code counts an exception as correct — not copied).
- R_format ∈ {0, 1}: the whole output is ``<think>…</think><answer>…</answer>``.
- R_logic ∈ {+1, −1, 0}: the judge's verdict on whether the reasoning supports the
  answer, asked only when R_acc = 1 (it cannot change R otherwise). A judge that
  fails on a sample gives 0 there — neither reward nor penalty for something the
  policy did not do — and is counted (``verdicts["error"]``).

Reward functions follow the contract ``fn(prompts, completions, **kw) -> list[float | None]``
(prompts are schema rows; dataset columns such as ``label`` arrive as keyword lists).
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from egt.data.prompt import format_ok, parse_answer
from egt.rl.judges.base import CONTRADICT, SUPPORT, UNDECIDED, JudgeItem, LogicJudge
from egt.rl.judges.rule import RuleJudge

log = logging.getLogger(__name__)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
VERDICT_NAMES = {SUPPORT: "support", CONTRADICT: "contradict", UNDECIDED: "undecided", None: "error"}


def _labels(prompts: Sequence[Mapping[str, Any]], label: Sequence[int] | None) -> list[int]:
    return [int(x) for x in label] if label is not None else [int(p["label"]) for p in prompts]


def accuracy_reward(prompts: Sequence[Mapping[str, Any]], completions: Sequence[str],
                    label: Sequence[int] | None = None, **kw: Any) -> list[float | None]:
    """1.0 when the parsed answer is the label, else 0.0 (a parse failure is 0.0).

    >>> accuracy_reward([{}, {}, {}], ["<answer>2</answer>", "<answer>1</answer>", "<answer>2"], label=[2, 2, 2])
    [1.0, 0.0, 0.0]
    """
    return [float(parse_answer(c) == y) for c, y in zip(completions, _labels(prompts, label))]


def format_reward(prompts: Sequence[Any], completions: Sequence[str], **kw: Any) -> list[float | None]:
    """1.0 when the whole output is ``<think>…</think><answer>…</answer>``.

    >>> format_reward([{}, {}], ["<think>a</think><answer>1</answer>", "<answer>1</answer>"])
    [1.0, 0.0]
    """
    return [float(format_ok(c)) for c in completions]


def reasoning_of(completion: str) -> str:
    """The text inside ``<think>``, else everything before ``<answer>``."""
    m = _THINK.search(completion)
    return (m.group(1) if m else completion.split("<answer>")[0]).strip()


@dataclass
class RewardTerms:
    """Every term per completion, and the judge's verdict counts over the batch."""

    reward: list[float]
    acc: list[float]
    logic: list[float]
    format: list[float]
    verdicts: Counter = field(default_factory=Counter)  # support | contradict | undecided | error | not_asked


class CompositeReward:
    """R = R_acc (1 + α R_logic) + β R_format.

    >>> r = CompositeReward(alpha=0.5, beta=0.5)
    >>> good = "<think>Response 1 says 3, which is wrong. Response 2 says 2, which is right.</think><answer>2</answer>"
    >>> r([{"label": 2}, {"label": 1}, {"label": 2}], [good, good, "<answer>2</answer>"])
    [2.0, 0.5, 1.0]
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, judge: LogicJudge | None = None):
        self.alpha, self.beta = alpha, beta
        self.judge = judge if judge is not None else RuleJudge()

    def __call__(self, prompts: Sequence[Mapping[str, Any]], completions: Sequence[str],
                 **kw: Any) -> list[float | None]:
        return list(self.terms(prompts, completions, **kw).reward)

    def terms(self, prompts: Sequence[Mapping[str, Any]], completions: Sequence[str],
              label: Sequence[int] | None = None, **kw: Any) -> RewardTerms:
        acc = [float(a) for a in accuracy_reward(prompts, completions, label)]
        fmt = [float(f) for f in format_reward(prompts, completions)]
        logic = [0.0] * len(completions)
        counts: Counter = Counter(not_asked=sum(a == 0.0 for a in acc))
        asked = [i for i, a in enumerate(acc) if a == 1.0]
        if asked:
            items = [JudgeItem(_public(prompts[i]), reasoning_of(completions[i]), parse_answer(completions[i]))
                     for i in asked]
            for i, v in zip(asked, self._verdicts(items)):
                counts[VERDICT_NAMES[v]] += 1
                logic[i] = float(v) if v is not None else 0.0
        reward = [a * (1.0 + self.alpha * g) + self.beta * f for a, g, f in zip(acc, logic, fmt)]
        return RewardTerms(reward, acc, logic, fmt, counts)

    def _verdicts(self, items: list[JudgeItem]) -> list[int | None]:
        try:
            out = self.judge.verdicts(items)
        except Exception as e:  # a broken judge must not stop training: R_logic = 0, counted as errors
            log.warning("[rl] logic judge %s failed on a batch of %d: %s", self.judge.name, len(items), e)
            return [None] * len(items)
        if len(out) != len(items):
            log.warning("[rl] logic judge %s returned %d verdicts for %d items", self.judge.name, len(out), len(items))
            return [None] * len(items)
        return [v if v in (SUPPORT, CONTRADICT, UNDECIDED) else None for v in out]


def _public(sample: Mapping[str, Any]) -> dict[str, Any]:
    """What a judge may see: the sample without its label."""
    return {k: v for k, v in sample.items() if k != "label"}
