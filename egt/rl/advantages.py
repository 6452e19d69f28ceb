"""Advantage estimators (docs/design.md §5.3), one class each, chosen by ``rl/advantage=…``.

An estimator subclasses :class:`AdvantageEstimator` and maps the global rollout batch (every row's
reward, reward terms, completion length, group and selection score: :class:`egt.rl.batch.RolloutBatch`)
to one advantage per completion. Add one: a class here or in any importable module, a YAML file under
``conf/rl/advantage/`` with its ``_target_`` and arguments (docs/extending.md).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from egt.rl.batch import RolloutBatch
from egt.rl.functional import batch_whiten, group_advantages

__all__ = ["AdvantageEstimator", "BatchWhitenAdvantage", "GroupAdvantage"]


class AdvantageEstimator(ABC):
    """The contract: ``__call__(batch) -> advantages`` [B] float32, one per completion row of ``batch``
    in its order; pure (no state changes between calls), deterministic, no gradient."""

    @abstractmethod
    def __call__(self, batch: RolloutBatch) -> torch.Tensor:  # [B]
        """Advantages of the batch's rows."""


class GroupAdvantage(AdvantageEstimator):
    """GRPO (Shao et al. 2024, DeepSeekMath §4.1.2): Â_i = (r_i − mean_g) / (std_g + ε) within each
    prompt's group of G rewards (population std). A prompt whose G completions all score the same
    contributes no gradient.

    >>> GroupAdvantage()(RolloutBatch.of_rewards(torch.tensor([1., 3., 2., 2.]), group_size=2))
    tensor([-1.0000,  1.0000,  0.0000,  0.0000])
    """

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, batch: RolloutBatch) -> torch.Tensor:
        return group_advantages(batch.rewards, batch.group_size, self.eps)  # [B]


class BatchWhitenAdvantage(AdvantageEstimator):
    """R1-Reward's REINFORCE(++) baseline: Â_i = (r_i − mean_B) / (std_B + ε) over the whole rollout
    batch, one weight per sequence (R1-Reward's and OpenRLHF's code weigh each sequence by its completion
    tokens instead; issue 34). Works with G = 1; with G > 1 the groups are ignored.

    >>> BatchWhitenAdvantage()(RolloutBatch.of_rewards(torch.tensor([0., 2., 0., 2.])))
    tensor([-1.0000,  1.0000, -1.0000,  1.0000])
    """

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, batch: RolloutBatch) -> torch.Tensor:
        return batch_whiten(batch.rewards, self.eps)  # [B]
