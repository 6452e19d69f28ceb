"""Policy losses (docs/design.md §5.4), one class each, chosen by ``rl/loss=…``.

A loss subclasses :class:`PolicyLoss` and sees one mini-batch of completions: current and
rollout-time log-probs of the completion tokens, one advantage per sequence, the token mask and the
filter's keep/denominator masks. KL to the reference is added by the module.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import torch

from egt.rl.functional import aggregate, masked_mean, ppo_clip_loss, preclip_log_ratio


class LossOutput(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    clip_frac: torch.Tensor  # share of completion tokens whose ratio was clipped
    ratio_mean: torch.Tensor  # mean ρ over completion tokens (≈ 1 on the first PPO epoch)


class PolicyLoss(ABC):
    """The contract: ``__call__(logp, old_logp, advantages, token_mask, keep, in_denominator)`` with
    logp, old_logp, token_mask [b, L] (log-probs of the completion tokens under π_θ, with gradient, and
    π_old), advantages, keep, in_denominator [b] → :class:`LossOutput` (a differentiable scalar loss)."""

    @abstractmethod
    def __call__(
        self,
        logp: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        token_mask: torch.Tensor,
        keep: torch.Tensor | None = None,
        in_denominator: torch.Tensor | None = None,
    ) -> LossOutput:
        """The mini-batch's policy loss."""


class PPOClipLoss(PolicyLoss):
    """GRPO / PPO clipped surrogate, ρ = exp(log π_θ − log π_old) without pre-clip."""

    def __init__(self, clip_eps: float = 0.2):
        self.clip_eps = clip_eps

    def log_ratio(self, logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
        return logp - old_logp  # [B, L]

    def __call__(
        self,
        logp: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        token_mask: torch.Tensor,
        keep: torch.Tensor | None = None,
        in_denominator: torch.Tensor | None = None,
    ) -> LossOutput:
        log_ratio = self.log_ratio(logp, old_logp)  # [B, L]
        per_token, clipped = ppo_clip_loss(log_ratio, advantages, self.clip_eps)  # [B, L]
        loss = aggregate(per_token, token_mask, keep, in_denominator)
        with torch.no_grad():
            clip_frac = masked_mean(clipped.float(), token_mask)
            ratio_mean = masked_mean(log_ratio.exp(), token_mask)
        return LossOutput(loss, clip_frac, ratio_mean)


class StableReinforceLoss(PPOClipLoss):
    """StableReinforce (R1-Reward): the log-ratio is clamped to [log 1e-3, log 1e3] before
    exp (pre-clip), then the PPO clip with ε = 0.2. The advantage filter is ``rl/filter``."""

    def __init__(self, clip_eps: float = 0.2, ratio_low: float = 1e-3, ratio_high: float = 1e3):
        super().__init__(clip_eps)
        self.low, self.high = math.log(ratio_low), math.log(ratio_high)

    def log_ratio(self, logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
        return preclip_log_ratio(logp, old_logp, self.low, self.high)  # [B, L]
