"""Curricula (paper §2.4): the order RL sees the selected samples in, epoch after epoch.

A curriculum fixes epoch 0's order (``selection.json["ids"]``) and whether
later epochs are reshuffled; :func:`make_sampler` turns a selection into the
resumable sampler the RL stage iterates. Contract with the RL stage:

    selection = json.load(open(select_result["selection_path"]))
    ds = <the rl samples in the order of selection["ids"]>     # row i = selection["ids"][i]
    sampler = make_sampler(selection, len(ds))                  # yields row indices
    # sampler.set_epoch(e) at each epoch start, sampler.advance(batch) per batch,
    # sampler.state_dict() in the checkpoint, load_state_dict() on resume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from typing import Any, Sequence

import numpy as np

from egt.data.sampler import ResumableSampler
from egt.select.methods import rank_by

__all__ = [
    "Curriculum",
    "Ascending",
    "Descending",
    "Shuffle",
    "DataOrder",
    "CurriculumSampler",
    "make_sampler",
    "epoch_ids",
]


class Curriculum(ABC):
    name = "curriculum"
    shuffle_each_epoch = False

    @abstractmethod
    def first_epoch(self, ids: np.ndarray, scores: np.ndarray, data_pos: np.ndarray, seed: int) -> np.ndarray:
        """Indices into ``ids`` in epoch 0's order.  ([K], [K], [K]) → [K]"""

    def stages(self, ids: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
        """What ``selection.json`` records beside the order when epochs see different samples (None: every
        epoch sees them all); :class:`egt.select.two_stage.TwoStage` overrides it.  ([K], [K]) → dict"""
        return None


class Ascending(Curriculum):
    """Low to high entropy score, every epoch (the paper)."""

    name = "ascending"

    def first_epoch(self, ids, scores, data_pos, seed):
        return rank_by(scores, ids)


class Descending(Curriculum):
    """High to low entropy score (+inf first), every epoch; ties by id."""

    name = "descending"

    def first_epoch(self, ids, scores, data_pos, seed):
        return rank_by(-scores, ids)


class DataOrder(Curriculum):
    """The data set's own order, every epoch."""

    name = "none"

    def first_epoch(self, ids, scores, data_pos, seed):
        return np.argsort(data_pos, kind="stable")


class Shuffle(Curriculum):
    """A seeded permutation of the data order in epoch 0, a new one every later epoch."""

    name = "shuffle"
    shuffle_each_epoch = True

    def first_epoch(self, ids, scores, data_pos, seed):
        base = np.argsort(data_pos, kind="stable")
        return base[np.asarray(ResumableSampler(len(ids), seed=seed, shuffle=True).order(0), dtype=np.int64)]


class CurriculumSampler(ResumableSampler):
    """Row indices into ``selection["ids"]``: epoch 0 is the stored order itself; later
    epochs repeat it, or (``shuffle``) apply a new seeded permutation per epoch.
    Resumable mid-epoch like :class:`ResumableSampler`."""

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle or epoch == 0:
            return list(range(self.n))
        return super().order(epoch)


def make_sampler(
    selection: dict[str, Any], n: int | None = None, hinted: bool = False, stage1_length: int | None = None
) -> CurriculumSampler:
    """The sampler for a ``selection.json`` dict; ``n`` (the RL data set's length) is checked
    against the selection so a data set built from other ids fails loudly. A two-stage selection
    (``stages``) gives a :class:`egt.select.two_stage.TwoStageSampler`; ``hinted``: its stage-2 hard rows
    as ``n + i`` (:class:`egt.select.two_stage.HintedRows`); ``stage1_length``: its stage 1 in samples (a
    ``stage1_share`` selection, egt.select.two_stage.TwoStage)."""
    k = len(selection["ids"])
    if n is not None and n != k:
        raise ValueError(
            f"the RL data set has {n} rows but the selection holds {k} ids: build it from "
            "selection['ids'] in that order"
        )
    seed, shuffle = int(selection["seed"]), bool(selection["shuffle_each_epoch"])
    stages = selection.get("stages")
    if stages is None:
        return CurriculumSampler(k, seed=seed, shuffle=shuffle)
    from egt.select.two_stage import TwoStageSampler

    row = {str(i): r for r, i in enumerate(selection["ids"])}
    unknown = [i for i in stages["hard"] if str(i) not in row]
    if unknown:
        raise ValueError(f"selection stages.hard names {len(unknown)} ids not in its ids (e.g. {unknown[:3]})")
    hard = [row[str(i)] for i in stages["hard"]]
    return TwoStageSampler(
        k, hard, int(stages["stage1_epochs"]), hinted=hinted, seed=seed, shuffle=shuffle, stage1_length=stage1_length
    )


def epoch_ids(selection: dict[str, Any], epoch: int) -> list[str]:
    """The ids in the order RL sees them in ``epoch`` (a hinted row is its sample's id)."""
    ids: Sequence[str] = selection["ids"]
    return [ids[i % len(ids)] for i in make_sampler(selection).order(epoch)]
