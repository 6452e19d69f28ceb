"""What the rollout batches behind one update generated, as the RL module logs it (docs/design.md §5.2).

Without refill an update has one rollout batch; with refill (egt.rl.refill) several, and the reward terms
are logged over every completion generated for the update, the dropped groups' included, so ``rl/reward``
means what it means without refill: the policy's reward on the prompts it was given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from egt.data.prompt import parse_answer
from egt.rl.functional import truncated
from egt.rl.reward import RewardTerms
from egt.rl.rollout import Rollout

__all__ = ["Generated", "VERDICTS"]

VERDICTS = ("support", "contradict", "undecided", "error", "not_asked")  # the logic judge's (egt.rl.reward)


@dataclass
class Generated:
    """Per completion row, over every rollout batch of one update ([B] each, B = Σ rows)."""

    ids: list[str]  # the prompts' sample ids, in the order they were drawn
    examples: list[dict[str, Any]]  # the first completions: {id, label, output}
    reward: list[float]  # R
    acc: list[float]  # R_acc
    logic: list[float]  # R_logic
    format: list[float]  # R_format
    parse_fail: list[float]  # 1.0 where parse_answer read no answer
    lengths: torch.Tensor  # [B] completion tokens, the stop token included
    truncated: torch.Tensor  # [B] bool, cut by max_new_tokens
    verdicts: Counter = field(default_factory=Counter)  # the judge's verdict counts
    rollouts: int = 1  # rollout batches
    trained_ids: list[str] | None = None  # with refill: the prompts of the update's batch (egt.rl.refill)

    @classmethod
    def of(
        cls, ro: Rollout, terms: RewardTerms, stop_ids: list[int], max_new_tokens: int, log_examples: int
    ) -> Generated:
        """One rollout batch and its reward terms; ``stop_ids`` and ``max_new_tokens`` tell a truncated
        completion; the first ``log_examples`` completions are kept as examples."""
        rows = [s for s in ro.samples for _ in range(ro.group_size)]  # [B]
        return cls(
            ids=[s["id"] for s in ro.samples],
            examples=[{"id": s["id"], "label": s["label"], "output": t} for s, t in zip(rows, ro.texts)][:log_examples],
            reward=list(terms.reward),
            acc=list(terms.acc),
            logic=list(terms.logic),
            format=list(terms.format),
            parse_fail=[float(parse_answer(t) is None) for t in ro.texts],
            lengths=ro.completion_mask.sum(-1),  # [B]
            truncated=truncated(ro.completion_ids, ro.completion_mask, stop_ids, max_new_tokens),  # [B]
            verdicts=terms.verdicts,
        )

    def __add__(self, other: Generated) -> Generated:
        """Both, ``self``'s rows first; as many examples as either holds (the first ones)."""
        n_examples = max(len(self.examples), len(other.examples))
        return Generated(
            ids=self.ids + other.ids,
            examples=(self.examples + other.examples)[:n_examples],
            reward=self.reward + other.reward,
            acc=self.acc + other.acc,
            logic=self.logic + other.logic,
            format=self.format + other.format,
            parse_fail=self.parse_fail + other.parse_fail,
            lengths=torch.cat([self.lengths, other.lengths]),
            truncated=torch.cat([self.truncated, other.truncated]),
            verdicts=self.verdicts + other.verdicts,
            rollouts=self.rollouts + other.rollouts,
        )

    def metrics(self) -> dict[str, float]:
        """Means over the rows (``rl/reward_std``: the population σ of R), the judge's counts summed.

        >>> g = Generated(["a"], [], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0],
        ...               torch.tensor([3, 5]), torch.tensor([False, True]), Counter(support=1))
        >>> m = g.metrics()
        >>> m["rl/reward"], m["rl/reward_std"], m["rl/response_len"], m["rl/truncated"], m["rl/judge_support"]
        (1.0, 1.0, 4.0, 0.5, 1.0)
        """
        reward = torch.tensor(self.reward)  # [B] float32
        return {
            "rl/reward": float(reward.mean()),
            "rl/reward_std": float(reward.std(unbiased=False)),
            "rl/acc": mean(self.acc),
            "rl/logic": mean(self.logic),
            "rl/format": mean(self.format),
            "rl/parse_fail": mean(self.parse_fail),
            "rl/response_len": float(self.lengths.float().mean()),
            "rl/truncated": float(self.truncated.float().mean()),
            **{f"rl/judge_{k}": float(self.verdicts.get(k, 0)) for k in VERDICTS},
        }


def mean(xs: list[float]) -> float:
    """The mean of a list, 0 for none (in float64, as Python sums)."""
    return float(sum(xs) / len(xs)) if xs else 0.0
