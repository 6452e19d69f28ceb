"""Refill (DAPO's dynamic sampling): the kept groups of several rollout batches make one update's batch
(``rl/filter=zero_variance rl.filter.refill=true``; docs/design.md §5.3).

The source: verl's DAPO recipe (``recipe/dapo/dapo_ray_trainer.py``, ``RayDAPOTrainer.fit``; options
``algorithm.filter_groups.{enable, metric, max_num_gen_batches}``) keeps generating batches, keeps each
prompt group whose metric has std > 0, and trains once it holds ``data.train_batch_size`` prompts, the
surplus of the last generation batch cut off (``batch[:train_batch_size * n]``); after
``max_num_gen_batches`` generation batches it raises an error.

egt runs it inside Lightning's loop (egt.rl.module): one training step per rollout batch of
``rl.batch_size`` prompts, drawn from the same DataLoader (so the curriculum's order holds and the sampler's
position counts every extra draw); the step's kept groups go into a :class:`RefillBuffer`, and the step that
fills it runs the update on exactly ``rl.batch_size`` groups, the first kept ones (the surplus dropped, as
verl). egt's choices where verl differs or is silent:

- after ``max_tries`` rollout batches it updates on the groups it has (verl raises); none kept: no update
  (logged, ``rl/update_skipped``), the buffer is emptied and the next step starts a new update;
- an epoch's last rollout batch ends the refill: the buffer is used as it is (verl carries it into the
  next epoch), as egt uses a short last rollout batch of an epoch without refill;
- every refill draws ``rl.batch_size`` prompts (verl's DAPO scripts generate 3 × the train batch at a time);
- log π_old, π_ref and the advantages are computed on the update's batch only (as verl): the dropped
  groups never go through a log-prob pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from egt.errors import ConfigError
from egt.rl.filters import AdvantageFilter, GroupFilter
from egt.rl.generated import Generated
from egt.rl.reward import RewardTerms
from egt.rl.rollout import Rollout

__all__ = ["RefillBuffer", "Update", "refill_buffer"]


def refill_buffer(adv_filter: AdvantageFilter, group_size: int, batch_size: int, pad_id: int) -> RefillBuffer | None:
    """The RL module's buffer when ``rl.filter`` asks for refills (a :class:`GroupFilter` with ``refill``), else
    None. A group filter needs G >= 2 (one completion has no variance: every group would be dropped)."""
    if not isinstance(adv_filter, GroupFilter):
        return None
    adv_filter.check(group_size)
    if not adv_filter.refill:
        return None
    if batch_size < 1:
        raise ConfigError(f"rl.filter.refill=true needs rl.batch_size >= 1 prompts per update (got {batch_size})")
    return RefillBuffer(batch_size, adv_filter.max_tries, pad_id)


@dataclass
class Update:
    """What :meth:`RefillBuffer.take` hands the module: the update's batch (``rollout`` and its ``terms``,
    None when no group was kept), everything generated for it, and the refill's counts (metrics)."""

    rollout: Rollout | None
    terms: RewardTerms | None
    generated: Generated
    stats: dict[str, float]


class RefillBuffer:
    """The kept groups of the rollout batches drawn for the current update, in the order they were drawn.

    ``batch_size``: groups (prompts) per update; ``max_tries``: rollout batches per update at most, the first
    included; ``pad_id``: the token that pads completions of different lengths to one tensor.
    """

    def __init__(self, batch_size: int, max_tries: int, pad_id: int):
        if batch_size < 1 or max_tries < 1:
            raise ValueError(f"batch_size={batch_size} and max_tries={max_tries} must be >= 1")
        self.batch_size, self.max_tries, self.pad_id = batch_size, max_tries, pad_id
        self._reset()

    def _reset(self) -> None:
        self.tries, self.dropped = 0, 0
        self._parts: list[tuple[Rollout, RewardTerms]] = []
        self._generated: Generated | None = None

    @property
    def empty(self) -> bool:
        """No rollout batch drawn for the current update yet: an update boundary."""
        return self.tries == 0

    @property
    def kept(self) -> int:
        """Kept groups held."""
        return sum(len(ro.samples) for ro, _ in self._parts)

    def add(self, ro: Rollout, terms: RewardTerms, kept: torch.Tensor, generated: Generated) -> None:
        """One rollout batch: ``kept`` [N] bool over its N groups (the filter's decision); only the kept
        groups' rows are held."""
        if kept.numel() != len(ro.samples):
            raise ValueError(f"{kept.numel()} group decisions for a rollout batch of {len(ro.samples)} prompts")
        groups = torch.nonzero(kept).flatten().tolist()
        self.tries += 1
        self.dropped += len(ro.samples) - len(groups)
        self._parts.append((_groups(ro, groups), _terms(terms, groups, ro.group_size)))
        self._generated = generated if self._generated is None else self._generated + generated

    def due(self, end_of_epoch: bool) -> bool:
        """Whether the update runs now: the batch is full, ``max_tries`` were spent, or the epoch ended."""
        return self.kept >= self.batch_size or self.tries >= self.max_tries or (end_of_epoch and self.tries > 0)

    def take(self) -> Update:
        """The update's batch, the first ``batch_size`` kept groups (the rest dropped as surplus), and
        empty the buffer."""
        if self._generated is None:
            raise RuntimeError("take() from a refill buffer that holds no rollout batch")
        kept = self.kept
        n = min(kept, self.batch_size)
        stats = {
            "rl/groups_dropped": float(self.dropped),
            "rl/groups_surplus": float(kept - n),
            "rl/groups_trained": float(n),
            "rl/refills": float(self.tries - 1),
            "rl/rollouts_per_update": float(self.tries),
        }
        rollout = terms = None
        if n:
            rollout = _concat([ro for ro, _ in self._parts], self.pad_id)
            terms = RewardTerms(*(sum((getattr(t, f) for _, t in self._parts), []) for f in _TERM_LISTS))
            rollout, terms = _groups(rollout, list(range(n))), _terms(terms, list(range(n)), rollout.group_size)
        self._generated.trained_ids = [x["id"] for x in rollout.samples] if rollout is not None else []
        update = Update(rollout, terms, self._generated, stats)
        self._reset()
        return update


_TERM_LISTS = ("reward", "acc", "logic", "format")  # RewardTerms' per-row fields, in its order


def _rows(groups: list[int], group_size: int) -> list[int]:
    """Row indices of ``groups`` (group g is rows g·G … g·G+G−1)."""
    return [g * group_size + j for g in groups for j in range(group_size)]


def _groups(ro: Rollout, groups: list[int]) -> Rollout:
    """The rows of ``groups`` of a rollout batch (log-probs are not computed yet, so not carried)."""
    rows = _rows(groups, ro.group_size)
    idx = torch.tensor(rows, dtype=torch.long)
    return Rollout(
        [ro.samples[g] for g in groups],
        ro.group_size,
        [ro.prompt_feats[i] for i in rows],
        ro.completion_ids[idx],  # [b, L]
        ro.completion_mask[idx],  # [b, L]
        [ro.texts[i] for i in rows],
    )


def _terms(terms: RewardTerms, groups: list[int], group_size: int) -> RewardTerms:
    """The reward terms of ``groups``' rows (the judge's verdict counts stay with egt.rl.generated)."""
    rows = _rows(groups, group_size)
    return RewardTerms(*([getattr(terms, f)[i] for i in rows] for f in _TERM_LISTS))


def _concat(parts: list[Rollout], pad_id: int) -> Rollout:
    """Rollouts one after the other; completions right-padded to the longest (``pad_id``, mask 0)."""
    length = max(ro.completion_ids.shape[1] for ro in parts)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(t, (0, length - t.shape[1]), value=value)

    return Rollout(
        [s for ro in parts for s in ro.samples],
        parts[0].group_size,
        [f for ro in parts for f in ro.prompt_feats],
        torch.cat([pad(ro.completion_ids, pad_id) for ro in parts]),  # [Σb, L]
        torch.cat([pad(ro.completion_mask, 0) for ro in parts]),  # [Σb, L]
        [t for ro in parts for t in ro.texts],
    )
