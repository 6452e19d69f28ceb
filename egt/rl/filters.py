"""StableReinforce advantage filters (docs/design.md §5.3), one class each, chosen by ``rl/filter=…``.

A filter subclasses :class:`AdvantageFilter` and returns which sequences count in the loss (``keep``)
and which count in the loss's denominator (``in_denominator``); :func:`egt.rl.functional.aggregate` uses
both. It sees the global rollout batch (:class:`egt.rl.batch.RolloutBatch`: rewards, reward terms,
lengths, groups, selection scores) and the advantages the estimator gave it.

A :class:`GroupFilter` keeps or drops whole groups (a prompt's G completions) on the rollout batch alone;
such a filter may also ask for refills (``refill``, ``max_tries``): the RL module then draws further rollout
batches until ``rl.batch_size`` groups are kept (egt.rl.refill, DAPO's dynamic sampling).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from egt.errors import ConfigError
from egt.rl.batch import RolloutBatch
from egt.rl.functional import filter_normalised, filter_r1_code, token_mean

__all__ = ["AdvantageFilter", "FilterResult", "GroupFilter", "NoFilter", "NormalisedAdvantageFilter", "R1CodeFilter"]


class FilterResult(NamedTuple):
    keep: torch.Tensor  # [B] bool
    in_denominator: torch.Tensor  # [B] bool


class AdvantageFilter(ABC):
    """The contract: ``__call__(batch, advantages) -> FilterResult`` with two [B] bool masks in the
    batch's row order; pure, deterministic, no gradient."""

    @abstractmethod
    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        """Which rows count in the loss and in its denominator."""


class GroupFilter(AdvantageFilter):
    """A filter that keeps or drops whole groups, decided on the rollout batch alone (rewards and their
    terms, not the advantages), so it can be decided on each rollout batch before any log-prob pass.

    ``refill``: when the kept groups do not fill the rollout batch (``rl.batch_size`` prompts), the RL module
    draws further rollout batches, in curriculum order, and updates once it holds ``rl.batch_size`` kept
    groups (egt.rl.refill; verl ``algorithm.filter_groups.enable``). ``max_tries``: at most this many rollout
    batches per update, the first included (verl's ``max_num_gen_batches``); then it updates on what it has.
    Without refill the batch shrinks (the dropped rows leave the loss and its denominator).
    """

    def __init__(self, refill: bool = False, max_tries: int = 10):
        if not isinstance(refill, bool):
            raise ConfigError(f"rl.filter.refill={refill!r}: write rl.filter.refill=true or rl.filter.refill=false")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise ConfigError(
                f"rl.filter.max_tries={max_tries!r}: write a whole number >= 1 of rollout batches per update, "
                "the first included (e.g. rl.filter.max_tries=10, as verl's DAPO recipe; verl's 0 = no limit: "
                "write a large number, an epoch's end still ends a refill)"
            )
        self.refill, self.max_tries = refill, max_tries

    def check(self, group_size: int) -> None:
        """A ConfigError when groups of ``group_size`` completions cannot be filtered: one completion has no
        variance, so every group would be dropped (verl keeps such groups unfiltered; egt refuses)."""
        if group_size < 2:
            raise ConfigError(
                f"rl.filter ({type(self).__name__}) keeps or drops whole groups and rl.group_size={group_size} "
                "makes groups of one completion, all dropped: write rl.group_size=4 (or more), or another rl/filter"
            )

    @abstractmethod
    def groups(self, batch: RolloutBatch) -> torch.Tensor:
        """[N] bool: which of the batch's N = B / G groups count (groups are consecutive rows)."""

    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        rows = self.groups(batch).repeat_interleave(batch.group_size)  # [B]
        return FilterResult(rows, rows)


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


class R1CodeFilter(AdvantageFilter):
    """The released R1-Reward code's filter (``ReplayBuffer.normalize``,
    openrlhf/trainer/ppo_utils/replay_buffer.py, yfzhang114/r1_reward@3693413), exactly: the whitened
    advantages Â (with ``rl/advantage=token_whiten``, R1's own) are compared with the *raw* mean ± z, the
    rewards' mean over completion tokens (``lower_bound = mean - 3``); Â outside, |Â| > ``cap`` (10) and
    non-finite Â are zeroed. Zeroed rows **stay in the denominator** (R1 sets their advantage to 0, its
    loss still averages over them). The bounds mix units: the window is centred on the raw mean μ, not
    on 0, so a low-reward row goes once μ > z − |Â| and a rare high one once Â > μ + z. Rewards [2, 2, 2, 0] → Â
    [.58, .58, .58, −1.73], bounds [−1.5, 4.5]: keeps [1, 1, 1, 0] (the paper's |Â| ≤ 3 keeps all four).

    ``token_weighted=False`` takes the raw mean per sequence (for ``rl/advantage=batch_whiten``).

    >>> from egt.rl.advantages import TokenWhitenAdvantage
    >>> b = RolloutBatch.of_rewards(torch.tensor([2., 2., 2., 0.]))
    >>> R1CodeFilter()(b, TokenWhitenAdvantage()(b))
    FilterResult(keep=tensor([ True,  True,  True, False]), in_denominator=tensor([True, True, True, True]))
    """

    def __init__(self, z: float = 3.0, cap: float = 10.0, token_weighted: bool = True):
        self.z, self.cap, self.token_weighted = z, cap, token_weighted

    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        lengths = batch.lengths if self.token_weighted else torch.ones_like(batch.lengths)
        keep = filter_r1_code(advantages, token_mean(batch.rewards, lengths), self.z, self.cap)  # [B]
        return FilterResult(keep, torch.ones_like(keep))
