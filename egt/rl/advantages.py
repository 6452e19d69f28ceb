"""Advantage estimators (docs/design.md §5.3), one class each, chosen by ``rl/advantage=…``."""
from __future__ import annotations

import torch

from egt.rl.functional import batch_whiten, group_advantages


class GroupAdvantage:
    """GRPO: normalise each prompt's G rewards by their own mean and std.
    A prompt whose G completions all score the same contributes no gradient."""

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        return group_advantages(rewards, group_size, self.eps)  # [N*G]


class BatchWhitenAdvantage:
    """R1-Reward's REINFORCE(++) baseline: whiten the rewards over the whole rollout batch.
    Works with G = 1; with G > 1 the groups are ignored."""

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        return batch_whiten(rewards, self.eps)  # [N*G]
