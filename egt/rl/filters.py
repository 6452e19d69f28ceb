"""StableReinforce advantage filters (docs/design.md §5.3), one class each, chosen by ``rl/filter=…``.

A filter subclasses :class:`AdvantageFilter` and returns which sequences count in the loss (``keep``)
and which count in the loss's denominator (``in_denominator``); :func:`egt.rl.functional.aggregate` uses
both. It sees the global rollout batch (:class:`egt.rl.batch.RolloutBatch`: rewards, reward terms,
lengths, groups, selection scores) and the advantages the estimator gave it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from egt.rl.batch import RolloutBatch
from egt.rl.functional import filter_normalised, filter_raw_rewards

__all__ = ["AdvantageFilter", "FilterResult", "NoFilter", "NormalisedAdvantageFilter", "RawRewardFilter"]


class FilterResult(NamedTuple):
    keep: torch.Tensor  # [B] bool
    in_denominator: torch.Tensor  # [B] bool


class AdvantageFilter(ABC):
    """The contract: ``__call__(batch, advantages) -> FilterResult`` with two [B] bool masks in the
    batch's row order; pure, deterministic, no gradient."""

    @abstractmethod
    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        """Which rows count in the loss and in its denominator."""


class NoFilter(AdvantageFilter):
    """Every sequence counts (GRPO)."""

    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        ones = torch.ones_like(advantages, dtype=torch.bool)
        return FilterResult(ones, ones)


class NormalisedAdvantageFilter(AdvantageFilter):
    """The R1-Reward paper's filter (the default; R1-Reward §3.2): keep |Â| ≤ z after normalisation;
    the rest leave the loss and its denominator."""

    def __init__(self, z: float = 3.0):
        self.z = z

    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        keep = filter_normalised(advantages, self.z)
        return FilterResult(keep, keep)


class RawRewardFilter(AdvantageFilter):
    """The released R1-Reward code's filter: keep raw rewards inside mean ± z (or mean ± z·std
    with ``times_std``); the dropped sequences are zeroed but stay in the denominator.
    With rewards in [0, 2] and z = 3 the absolute bounds never bite, which is the point of
    offering both: the code and the paper disagree."""

    def __init__(self, z: float = 3.0, times_std: bool = False):
        self.z, self.times_std = z, times_std

    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        keep = filter_raw_rewards(batch.rewards, self.z, self.times_std)
        return FilterResult(keep, torch.ones_like(keep))
