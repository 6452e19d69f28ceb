"""The composite reward of paper §2.4 / docs/design.md §5.1: R = R_acc · (1 + α R_logic) + β R_format.

- R_acc ∈ {0, 1}: the answer read by the accuracy rule (``reward/accuracy``: ``r1``, R1-Reward's lenient
  reading, default; ``strict``, egt's parse_answer) equals the label. R1-Reward's code counts an
  exception as correct — not copied.
- R_format ∈ {0, 1}: the format rule (``reward/format``: ``r1``, R1-Reward's
  ``^<think>.*?</think><answer>.*?</answer>$``, default; ``strict``, egt's format_ok). egt.rl.rules.
- R_logic ∈ {+1, −1, 0}: the judge's verdict on whether the reasoning supports the answer, asked only
  when R_acc = 1 (it cannot change R otherwise). A judge that fails on a sample gives 0 there —
  neither reward nor penalty for something the policy did not do — and is counted (``verdicts["error"]``).

Reward functions follow the contract ``fn(prompts, completions, **kw) -> list[float | None]``
(prompts are schema rows; dataset columns such as ``label`` arrive as keyword lists).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from egt.rl.judges.base import CONTRADICT, SUPPORT, UNDECIDED, JudgeItem, LogicJudge
from egt.rl.judges.rule import RuleJudge
from egt.rl.rules import AccuracyRule, FormatRule, R1Accuracy, R1Format, StrictAccuracy, StrictFormat

log = logging.getLogger(__name__)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
VERDICT_NAMES = {SUPPORT: "support", CONTRADICT: "contradict", UNDECIDED: "undecided", None: "error"}


def _labels(prompts: Sequence[Mapping[str, Any]], label: Sequence[int] | None) -> list[int]:
    return [int(x) for x in label] if label is not None else [int(p["label"]) for p in prompts]


def accuracy_reward(
    prompts: Sequence[Mapping[str, Any]], completions: Sequence[str], label: Sequence[int] | None = None, **kw: Any
) -> list[float | None]:
    """egt's strict R_acc (egt.rl.rules.StrictAccuracy): 1.0 when parse_answer gives the label, else 0.0.

    >>> accuracy_reward([{}, {}, {}], ["<answer>2</answer>", "<answer>1</answer>", "<answer>2"], label=[2, 2, 2])
    [1.0, 0.0, 0.0]
    """
    return list(StrictAccuracy()(prompts, completions, label))


def format_reward(prompts: Sequence[Any], completions: Sequence[str], **kw: Any) -> list[float | None]:
    """egt's strict R_format (egt.rl.rules.StrictFormat): the whole output is ``<think>…</think><answer>…</answer>``.

    >>> format_reward([{}, {}], ["<think>a</think><answer>1</answer>", "<answer>1</answer>"])
    [1.0, 0.0]
    """
    return list(StrictFormat()(prompts, completions))


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
    """R = R_acc (1 + α R_logic) + β R_format, R_acc and R_format by the given rules (default: R1-Reward's,
    egt.rl.rules.R1Accuracy / R1Format, as ``reward/accuracy=r1 reward/format=r1``).

    >>> r = CompositeReward(alpha=0.5, beta=0.5)
    >>> good = "<think>Response 1 says 3, which is wrong. Response 2 says 2, which is right.</think><answer>2</answer>"
    >>> r([{"label": 2}, {"label": 1}, {"label": 2}], [good, good, "<answer>2</answer>"])
    [2.0, 0.5, 1.0]
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        judge: LogicJudge | None = None,
        accuracy: AccuracyRule | None = None,
        format: FormatRule | None = None,
    ):
        self.alpha, self.beta = alpha, beta
        self.judge = judge if judge is not None else RuleJudge()
        self.accuracy = accuracy if accuracy is not None else R1Accuracy()
        self.format = format if format is not None else R1Format()
        for name, rule, base in (("accuracy", self.accuracy, AccuracyRule), ("format", self.format, FormatRule)):
            if not isinstance(rule, base):
                raise TypeError(f"reward.{name} must build an egt.rl.rules.{base.__name__}, got {type(rule).__name__}")

    def __call__(
        self, prompts: Sequence[Mapping[str, Any]], completions: Sequence[str], **kw: Any
    ) -> list[float | None]:
        return list(self.terms(prompts, completions, **kw).reward)

    def terms(
        self,
        prompts: Sequence[Mapping[str, Any]],
        completions: Sequence[str],
        label: Sequence[int] | None = None,
        **kw: Any,
    ) -> RewardTerms:
        answers = [self.accuracy.answer(c) for c in completions]
        labels = _labels(prompts, label)
        acc = [float(a == y) for a, y in zip(answers, labels)]
        fmt = [float(f) for f in self.format(prompts, completions)]
        logic = [0.0] * len(completions)
        counts: Counter = Counter(not_asked=sum(a == 0.0 for a in acc))
        asked = [i for i, a in enumerate(acc) if a == 1.0]
        if asked:
            items = [JudgeItem(_public(prompts[i]), reasoning_of(completions[i]), answers[i]) for i in asked]
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
