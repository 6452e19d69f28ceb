"""The difficulty prior's advantage (Chen et al. 2025, "Unlocking the Potential of Difficulty Prior in RL-based
Multimodal Reasoning", arXiv 2505.13261): the group's empirical accuracy reweights the advantage, harder
groups weighing more, in place of GRPO's σ normalisation. Chosen by ``rl/advantage=difficulty_weighted``."""

from __future__ import annotations

from typing import Sequence

import torch

from egt.rl.advantages import AdvantageEstimator
from egt.rl.batch import RolloutBatch
from egt.rl.functional import group_advantages

__all__ = ["DifficultyWeightedAdvantage", "difficulty_weights"]


def difficulty_weights(
    acc: torch.Tensor,
    kind: str = "exp",
    temperature: float = 1.0,
    edges: Sequence[float] = (),
    values: Sequence[float] = (),
) -> torch.Tensor:
    """w(acc_g) per group: ``exp`` → exp((1 − acc_g) / temperature) (1 for a group always right, e^(1/T) for
    one never right); ``bins`` → ``values[k]`` for the k-th pass-rate bin of ``edges`` (ascending upper
    bounds, a bin's upper bound inclusive; ``len(values) == len(edges) + 1``).  [N] → [N]

    >>> [round(w, 4) for w in difficulty_weights(torch.tensor([1.0, 0.25, 0.0])).tolist()]  # 1, e^0.75, e
    [1.0, 2.117, 2.7183]
    >>> difficulty_weights(torch.tensor([0.0, 0.3, 0.5, 0.9]), "bins", edges=[0.25, 0.5],
    ...                    values=[2.0, 1.5, 1.0]).tolist()
    [2.0, 1.5, 1.5, 1.0]
    """
    if kind == "exp":
        if temperature <= 0:
            raise ValueError(f"difficulty weight temperature must be > 0, got {temperature}")
        return torch.exp((1.0 - acc) / temperature)
    if kind == "bins":
        if len(values) != len(edges) + 1 or list(edges) != sorted(edges):
            raise ValueError(f"bins: need ascending edges and one more value than edges, got {edges} / {values}")
        index = torch.bucketize(acc, torch.tensor(list(edges), dtype=acc.dtype))  # [N]: edge k holds acc <= edges[k]
        return torch.tensor(list(values), dtype=torch.float32)[index]
    raise ValueError(f"difficulty weight kind must be exp or bins, got {kind!r}")


class DifficultyWeightedAdvantage(AdvantageEstimator):
    """Â_i = w(acc_g) · base_i, with acc_g the group's mean accuracy reward R_acc ∈ [0, 1] (from the reward's
    terms: R = 2 and R = 1.5 do not reveal accuracy) and w from :func:`difficulty_weights`. ``base``:
    ``centred`` (r_i − mean_g: the σ normalisation replaced, as the paper describes; default), ``group``
    (GRPO's (r_i − mean_g) / (σ_g + ε), unbiased σ), or ``group_population`` (population σ). Under several
    ranks acc_g comes from the gathered batch, like every advantage.

    The paper's exact weighting is not public (no code released; the OpenReview discussion, forum
    0xewM6o97m, describes it only as larger weight for harder groups): the exponential in 1 − acc_g with
    temperature 1 and the bins are egt's choices, named here and in conf/rl/advantage/difficulty_weighted.yaml.

    >>> batch = RolloutBatch.of_rewards(torch.tensor([2.0, 0.5, 0.5, 0.5]), 4, acc=torch.tensor([1.0, 0, 0, 0]))
    >>> [round(a, 3) for a in DifficultyWeightedAdvantage()(batch).tolist()]  # w = e^0.75; r − mean = 1.125, −0.375
    [2.382, -0.794, -0.794, -0.794]
    """

    def __init__(
        self,
        base: str = "centred",
        weight: str = "exp",
        temperature: float = 1.0,
        edges: Sequence[float] = (),
        values: Sequence[float] = (),
        eps: float = 1e-6,
    ):
        if base not in ("centred", "group", "group_population"):
            raise ValueError(f"difficulty_weighted base must be centred, group or group_population, got {base!r}")
        difficulty_weights(torch.zeros(1), weight, temperature, edges, values)  # a bad setting fails when built
        self.base, self.weight, self.temperature, self.eps = base, weight, temperature, eps
        self.edges, self.values = list(edges), list(values)

    def __call__(self, batch: RolloutBatch) -> torch.Tensor:
        g = batch.group_size
        r = batch.rewards.float().view(-1, g)  # [N, G]
        if self.base == "centred":
            base = (r - r.mean(1, keepdim=True)).reshape(-1)  # [B]
        else:
            base = group_advantages(batch.rewards, g, self.eps, unbiased=self.base == "group")  # [B]
        acc = batch.acc.float().view(-1, g).mean(1)  # [N]
        w = difficulty_weights(acc, self.weight, self.temperature, self.edges, self.values)  # [N]
        return base * w.repeat_interleave(g)  # [B]
