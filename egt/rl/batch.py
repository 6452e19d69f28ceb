"""What an advantage estimator and an advantage filter see of one rollout batch.

The RL module (egt.rl.module) builds a :class:`RolloutBatch` after the rewards of a rollout are
known, gathered over every rank in rank order when several processes train (so batch statistics are
those one process with the whole batch would compute), and hands it to ``rl/advantage`` and then
``rl/filter``. With *N* prompts of *G* completions each on every rank and *W* ranks, *B* = W·N·G rows;
the *G* completions of one prompt are consecutive and share a group id.

It carries what the published variants need: the composite reward and its terms (a difficulty-weighted
advantage needs the group's accuracy), completion lengths (REINFORCE++ whitens over tokens), group ids
(GRPO's groups, zero-variance filters), and the selection's score of each row's sample (entropy,
pass rate: a score-weighted advantage). A new per-row quantity belongs here, not in a wider call.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["RolloutBatch"]


@dataclass
class RolloutBatch:
    """Per completion row, over the global rollout batch ([B] each; float32 unless said).

    rewards: the composite reward R (with ``rl.kl_in=reward``, its KL penalty already subtracted).
    acc, logic, format: its terms R_acc ∈ {0, 1}, R_logic ∈ {−1, 0, 1}, R_format ∈ {0, 1} (egt.rl.reward).
    lengths: completion tokens (the stop token included), int64.
    group_ids: the prompt a row answers (rows of one prompt share it, groups are consecutive), int64.
    scores: the selection's score of the row's sample (selection.json ``scores``: lower = more certain;
        +inf for a sample without an answer token), NaN when the selection gives none.
    group_size: *G*, completions per prompt.
    """

    rewards: torch.Tensor
    acc: torch.Tensor
    logic: torch.Tensor
    format: torch.Tensor
    lengths: torch.Tensor
    group_ids: torch.Tensor
    scores: torch.Tensor
    group_size: int

    @classmethod
    def of_rewards(cls, rewards: torch.Tensor, group_size: int = 1, **given: torch.Tensor) -> "RolloutBatch":
        """A batch with only ``rewards`` known (the rest: acc = reward > 0, logic 0, format 1, length 1,
        consecutive groups of ``group_size``, no score), overridden by ``given``: for tests and doctests.

        >>> RolloutBatch.of_rewards(torch.tensor([0., 2., 1., 1.]), 2).group_ids.tolist()
        [0, 0, 1, 1]
        """
        b = rewards.numel()
        out = cls(
            rewards=rewards.float(),
            acc=(rewards > 0).float(),
            logic=torch.zeros(b),
            format=torch.ones(b),
            lengths=torch.ones(b, dtype=torch.long),
            group_ids=torch.arange(b, dtype=torch.long) // max(1, group_size),
            scores=torch.full((b,), float("nan")),
            group_size=group_size,
        )
        for name, value in given.items():
            setattr(out, name, value)
        return out

    def __len__(self) -> int:
        return self.rewards.numel()

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every per-row tensor by field name (what gathering over ranks concatenates)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "group_size"}
