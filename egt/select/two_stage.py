"""The difficulty prior's two-stage curriculum (Chen et al. 2025, arXiv 2505.13261; no code released).

The paper's method section and its OpenReview discussion (forum 0xewM6o97m) describe: RL first on the
moderate prompts, then on moderate and hard prompts together, a difficulty hint added to the hard ones in
the second stage. Neither the split between "moderate" and "hard" nor the hint's wording is public;
egt's choices are written at :class:`TwoStage` and in ``conf/curriculum/two_stage.yaml``.

Contract (beside :mod:`egt.select.curriculum`'s): ``selection.json`` holds every kept id in ``ids`` (the
order of a stage-2 epoch) and ``stages = {"stage1_epochs": e1, "split": s, "hard": [ids]}``. RL's sampler
(:class:`TwoStageSampler`) yields, for epoch e < e1, the rows of ``ids`` that are not hard, in that order;
for e ≥ e1 every row, a hard row i as ``n + i`` when hints are on, which :class:`HintedRows` serves as
row i with the sample field ``hint`` set (the prompt builder, :func:`egt.data.prompt.build_messages`,
appends it). Evaluation, probing and SFT never build a ``HintedRows``, so their prompts carry no hint.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from egt.select.curriculum import Ascending, Curriculum, CurriculumSampler

__all__ = ["TwoStage", "TwoStageSampler", "HintedRows", "is_hard", "stage_of"]

# A pass rate is k/n, read back as 1 − (1 − k/n): rounding to 12 decimals undoes that subtraction's last-bit
# error, so a pass rate equal to the split is moderate (not hard) whatever the rounding.
_DECIMALS = 12


def is_hard(scores: np.ndarray, split: float) -> np.ndarray:
    """Hard = pass rate < ``split``, with the pass rate 1 − ``scores`` (``entropy=difficulty``). [K] → [K] bool.

    >>> is_hard(np.array([1 - 3 / 10, 1 - 7 / 10, 0.5, 0.9]), 0.3).tolist()  # pass rates .3, .7, .5, .1
    [False, False, False, True]
    """
    rate = np.round(1.0 - np.asarray(scores, dtype=np.float64), _DECIMALS)
    return rate < split


def stage_of(epoch: int, stage1_epochs: int) -> int:
    """1 for the first ``stage1_epochs`` epochs, then 2.

    >>> [stage_of(e, 2) for e in range(4)]
    [1, 1, 2, 2]
    """
    return 1 if epoch < stage1_epochs else 2


class TwoStage(Curriculum):
    """Stage 1 (the first ``stage1_epochs`` RL epochs): the moderate samples only; stage 2 (the remaining
    ``rl.epochs − stage1_epochs``): moderate and hard together. Pass rate p = 1 − difficulty score (the
    fraction of the probe's n sampled outputs that give the label, ``entropy=difficulty``, in [0, 1]);
    hard: p < ``split``; moderate: p ≥ ``split`` (within the band ``selection=pass_rate`` kept,
    [low, high]). Source: Chen et al. 2025 (arXiv 2505.13261, method section; OpenReview 0xewM6o97m).

    egt's choices where the source is silent: ``split`` = 0.5 by default (hard = right less than half the
    time: with n = 8 and the band [0.1, 0.87], hard = 1/8 … 3/8, moderate = 4/8 … 6/8); one stage-1 epoch;
    the order within each stage is the ``within`` curriculum's over all kept samples (default ascending
    difficulty, easy to hard; stage 1 keeps that order's moderate samples, so stage 2 of an ascending
    order is stage 1's samples followed by the hard ones); ``within = shuffle`` reshuffles every epoch.

    ``stage1_share`` (egt's, for a budget in updates such as ``experiment=methods``): stage 1 is the first
    ⌈share × ``rl.max_steps``⌉ rollout batches instead of whole epochs — the moderate samples in the stored
    order, again from the start (a new permutation with ``within = shuffle``) as often as that takes, cut
    at that many batches — then stage-2 epochs until the budget ends. Needs ``rl.max_steps`` > 0."""

    name = "two_stage"

    def __init__(
        self,
        split: float = 0.5,
        stage1_epochs: int = 1,
        within: Curriculum | None = None,
        stage1_share: float | None = None,
    ):
        if stage1_share is not None and not 0.0 < stage1_share < 1.0:
            raise ValueError(f"curriculum.order.stage1_share={stage1_share}: a share of rl.max_steps in (0, 1)")
        if stage1_share is not None and stage1_epochs != 1:
            raise ValueError(
                "curriculum.order.stage1_share sets stage 1's length in updates: leave curriculum.order.stage1_epochs=1"
            )
        if not 0.0 < split <= 1.0:
            raise ValueError(f"curriculum.order.split={split}: a pass rate in (0, 1] (hard = pass rate < split)")
        if int(stage1_epochs) != stage1_epochs or stage1_epochs < 1:
            raise ValueError(f"curriculum.order.stage1_epochs={stage1_epochs}: a whole number of epochs, >= 1")
        within = Ascending() if within is None else within
        if not isinstance(within, Curriculum) or isinstance(within, TwoStage):
            raise TypeError(
                "curriculum.order.within must build a single-stage egt.select.curriculum.Curriculum "
                f"(e.g. {{_target_: egt.select.curriculum.Ascending}}), got {type(within).__name__}"
            )
        self.split, self.stage1_epochs, self.within = float(split), int(stage1_epochs), within
        self.stage1_share = None if stage1_share is None else float(stage1_share)
        self.shuffle_each_epoch = within.shuffle_each_epoch

    def first_epoch(self, ids, scores, data_pos, seed):
        return self.within.first_epoch(ids, scores, data_pos, seed)

    def stages(self, ids: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
        hard = is_hard(scores, self.split)
        if hard.all():
            raise ValueError(
                f"curriculum=two_stage: every one of the {len(ids)} kept samples has a pass rate below "
                f"curriculum.order.split={self.split}, so stage 1 would be empty: lower the split"
            )
        out = {"stage1_epochs": self.stage1_epochs, "split": self.split, "hard": [str(i) for i in ids[hard]]}
        if self.stage1_share is not None:  # only when set: other selection files keep their contents
            out["stage1_share"] = self.stage1_share
        return out


class TwoStageSampler(CurriculumSampler):
    """Row indices of :class:`TwoStage`'s epochs over the ``n`` rows of ``selection["ids"]``: stage 1 the
    rows not in ``hard``, stage 2 all of them (a hard row i as ``n + i`` when ``hinted``), each in the
    stored order (epoch 0 and every epoch without reshuffling) or its epoch's seeded permutation.

    Epochs differ in length, so the sampler has no ``len``: Lightning fixes an epoch's batch count once,
    at fit start, from ``len``; without one it runs every epoch to the iterator's end. Use
    :meth:`epoch_length`. Resumable mid-epoch like :class:`~egt.data.sampler.ResumableSampler` (the
    order is a function of the epoch).
    """

    def __init__(
        self,
        n: int,
        hard: Sequence[int],
        stage1_epochs: int,
        *,
        hinted: bool = False,
        seed: int = 0,
        shuffle: bool = False,
        stage1_length: int | None = None,
    ):
        super().__init__(n, seed=seed, shuffle=shuffle)
        self.hard, self.stage1_epochs, self.hinted = frozenset(int(i) for i in hard), int(stage1_epochs), hinted
        if stage1_length is not None and (self.stage1_epochs != 1 or stage1_length < 1):
            raise ValueError(f"stage1_length={stage1_length} needs stage1_epochs=1 and at least one sample")
        self.stage1_length = stage1_length

    def order(self, epoch: int) -> list[int]:
        if epoch == 0 and self.stage1_length is not None:  # stage 1 of a fixed length: moderate rows, repeated
            rows: list[int] = []
            for p in range(self.stage1_length):  # pass p: the stored order or its seeded permutation p
                rows += [i for i in super().order(p) if i not in self.hard]
                if len(rows) >= self.stage1_length:
                    return rows[: self.stage1_length]
        base = super().order(epoch)
        if stage_of(epoch, self.stage1_epochs) == 1:
            return [i for i in base if i not in self.hard]
        return [self.n + i if self.hinted and i in self.hard else i for i in base]

    def epoch_length(self, epoch: int) -> int:
        """This rank's samples in ``epoch``."""
        return len(self.local_order(epoch))

    def __len__(self) -> int:
        raise TypeError("a two-stage curriculum's epochs differ in length: use epoch_length(epoch)")


class HintedRows(Dataset):
    """``ds`` (the RL samples in ``selection["ids"]`` order) and, at ``len(ds) + i``, row i with the sample
    field ``hint`` = ``hint`` (a hard sample in stage 2; :class:`TwoStageSampler` with ``hinted``)."""

    def __init__(self, ds: Any, hint: str):
        self.ds, self.hint = ds, hint

    def __len__(self) -> int:
        return 2 * len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self.ds)
        if not 0 <= i < 2 * n:
            raise IndexError(f"row {i} of a hinted RL data set of {n} samples")
        return self.ds[i] if i < n else {**self.ds[i - n], "hint": self.hint}
