"""DAPO's dynamic-sampling rule as a group filter (``rl/filter=zero_variance``), with or without refill."""

from __future__ import annotations

import torch

from egt.rl.batch import RolloutBatch
from egt.rl.filters import GroupFilter

__all__ = ["ZeroVarianceFilter"]


class ZeroVarianceFilter(GroupFilter):
    """Drop every group whose G completions all got the same accuracy reward (all right or all wrong):
    it carries no preference signal. DAPO (Yu et al. 2025, arXiv 2503.14476, §3.2 dynamic sampling), as the
    anchors offer it: verl ``algorithm.filter_groups`` (recipe/dapo/dapo_ray_trainer.py), EasyR1
    ``algorithm.online_filtering``, OpenRLHF ``--dynamic_filtering``, ms-swift ``--dynamic_sample``.
    Decided on R_acc (``batch.acc``) ∈ {0, 1}, not the composite reward: R = 2 and R = 1.5 differ by logic
    or format while every answer is right. A group is kept when max_g R_acc > min_g R_acc.

    ``refill=false`` (default): the batch shrinks; dropped rows leave the loss and its denominator
    (``rl/adv_filtered`` logs their share), and the optimizer steps per epoch stay fixed (a mini-batch with
    every row dropped has a zero loss gradient; AdamW's momentum and weight decay still act on that step).
    ``refill=true``: further prompts are drawn until ``rl.batch_size`` groups are kept or ``max_tries``
    rollout batches were spent (egt.rl.refill; docs/design.md §5.3). Needs G ≥ 2: with G = 1 every group
    would be dropped (verl keeps G = 1 groups unfiltered; egt refuses the config).

    >>> b = RolloutBatch.of_rewards(torch.tensor([2., 1.5, 0., 0.5, 2., 0.]), 2,
    ...                             acc=torch.tensor([1., 1., 0., 0., 1., 0.]))
    >>> ZeroVarianceFilter()(b, torch.zeros(6)).keep.tolist()
    [False, False, False, False, True, True]
    """

    def groups(self, batch: RolloutBatch) -> torch.Tensor:
        acc = batch.acc.float().view(-1, batch.group_size)  # [N, G]
        return acc.max(1).values > acc.min(1).values  # [N]
