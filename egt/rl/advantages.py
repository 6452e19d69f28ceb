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
from egt.rl.functional import batch_whiten, group_advantages, token_whiten

__all__ = ["AdvantageEstimator", "BatchWhitenAdvantage", "GroupAdvantage", "TokenWhitenAdvantage"]


class AdvantageEstimator(ABC):
    """The contract: ``__call__(batch) -> advantages`` [B] float32, one per completion row of ``batch``
    in its order; pure (no state changes between calls), deterministic, no gradient."""

    @abstractmethod
    def __call__(self, batch: RolloutBatch) -> torch.Tensor:  # [B]
        """Advantages of the batch's rows."""


class GroupAdvantage(AdvantageEstimator):
    """GRPO (Shao et al. 2024, DeepSeekMath §4.1.2): Â_i = (r_i − mean_g) / (σ_g + ε) within each
    prompt's group of G rewards; σ_g Bessel's (÷(G−1)) with ``unbiased`` (the default, as TRL, verl and
    OpenRLHF), else the population σ (÷G; egt before issue 34). A prompt whose G completions all score the same
    contributes no gradient. Largest |Â|: √(G−1) population, (G−1)/√G unbiased (egt.rl.functional.group_advantages).

    >>> GroupAdvantage()(RolloutBatch.of_rewards(torch.tensor([1., 3., 2., 2.]), group_size=2))
    tensor([-0.7071,  0.7071,  0.0000,  0.0000])
    >>> GroupAdvantage(unbiased=False)(RolloutBatch.of_rewards(torch.tensor([1., 3., 2., 2.]), group_size=2))
    tensor([-1.0000,  1.0000,  0.0000,  0.0000])
    """

    def __init__(self, eps: float = 1e-6, unbiased: bool = True):
        self.eps, self.unbiased = eps, unbiased

    def __call__(self, batch: RolloutBatch) -> torch.Tensor:
        return group_advantages(batch.rewards, batch.group_size, self.eps, self.unbiased)  # [B]


class TokenWhitenAdvantage(AdvantageEstimator):
    """REINFORCE++ as the paper ran it (R1-Reward's OpenRLHF fork, ``--advantage_estimator reinforce``; the
    default of ``rl=stable_reinforce``): the rewards whitened over the rollout batch's completion tokens,
    each sequence weighing by its length, Â_i = (r_i − μ_tok) / √max(v_tok, ε) (egt.rl.functional.token_whiten;
    ReplayBuffer.normalize, openrlhf/trainer/ppo_utils/replay_buffer.py, yfzhang114/r1_reward@3693413).
    Works with G = 1; with G > 1 the groups are ignored.

    >>> TokenWhitenAdvantage()(RolloutBatch.of_rewards(torch.tensor([0., 1.]), lengths=torch.tensor([1, 3])))
    tensor([-1.7321,  0.5774])
    """

    def __init__(self, eps: float = 1e-8):
        self.eps = eps

    def __call__(self, batch: RolloutBatch) -> torch.Tensor:
        return token_whiten(batch.rewards, batch.lengths, self.eps)  # [B]


class BatchWhitenAdvantage(AdvantageEstimator):
    """Per-sequence whitening (``rl/advantage=batch_whiten``; egt's default before issue 34):
    Â_i = (r_i − mean_B) / (σ_B + ε) over the whole rollout batch, one weight per sequence whatever its
    length. R1-Reward's and OpenRLHF's code weigh each sequence by its completion tokens instead
    (:class:`TokenWhitenAdvantage`): rewards [0, 1] with lengths [1, 3] give [−1, 1] here, [−1.73, 0.58]
    there. Works with G = 1; with G > 1 the groups are ignored.

    >>> BatchWhitenAdvantage()(RolloutBatch.of_rewards(torch.tensor([0., 2., 0., 2.])))
    tensor([-1.0000,  1.0000, -1.0000,  1.0000])
    """

    def __init__(self, eps: float = 1e-6):
        self.eps = eps

    def __call__(self, batch: RolloutBatch) -> torch.Tensor:
        return batch_whiten(batch.rewards, self.eps)  # [B]
