"""DAPO's dynamic-sampling rule as an advantage filter (``rl/filter=zero_variance``)."""

from __future__ import annotations

import torch

from egt.rl.batch import RolloutBatch
from egt.rl.filters import AdvantageFilter, FilterResult

__all__ = ["ZeroVarianceFilter"]


class ZeroVarianceFilter(AdvantageFilter):
    """Drop every group whose G completions all got the same accuracy reward (all right or all wrong):
    it carries no preference signal. DAPO (Yu et al. 2025, arXiv 2503.14476, §3.2 dynamic sampling), as the
    anchors offer it: verl ``algorithm.filter_groups``, EasyR1 ``algorithm.online_filtering``, OpenRLHF
    ``--dynamic_filtering``, ms-swift ``--dynamic_sample``. Decided on R_acc (``batch.acc``), not the
    composite reward: R = 2 and R = 1.5 differ by logic or format while every answer is right. Dropped
    rows leave the loss and its denominator (``rl/adv_filtered`` logs their share).

    egt's choice for now: no refill. DAPO's anchors draw further prompts until the batch is full; here the
    batch shrinks, so the optimizer steps per epoch stay fixed (a mini-batch with every row dropped has a
    zero loss gradient; AdamW's momentum and weight decay still act on that step).

    >>> b = RolloutBatch.of_rewards(torch.tensor([2., 1.5, 0., 0.5, 2., 0.]), 2,
    ...                             acc=torch.tensor([1., 1., 0., 0., 1., 0.]))
    >>> ZeroVarianceFilter()(b, torch.zeros(6)).keep.tolist()
    [False, False, False, False, True, True]
    """

    def __call__(self, batch: RolloutBatch, advantages: torch.Tensor) -> FilterResult:
        acc = batch.acc.float().view(-1, batch.group_size)  # [N, G]
        varied = (acc.max(1).values > acc.min(1).values).repeat_interleave(batch.group_size)  # [B]
        return FilterResult(varied, varied)
