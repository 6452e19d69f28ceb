"""Online entropy curriculum (beyond the paper): the current policy re-probes, the order follows.

EGT (paper §2.3–2.4) probes the RL pool once, with the SFT model, and keeps that ascending order for
every epoch. Here, with ``curriculum.reprobe_every = m > 0``, epoch 0 keeps the SFT model's order and at
the start of every epoch e with e % m == 0 the current policy probes the samples again (the probe
stage's code and ``probe.*`` settings); epochs e … e+m−1 follow the new order (``curriculum.order``
applied to the new scores). With ``selection.online=true`` the kept set is re-selected too: the same
number K of samples, chosen by ``selection.method`` on the new scores of the whole probed pool, with at
most ``selection.max_change`` samples entering (and as many leaving) per re-probe.

This module is the pure part: new order and selection from score tables (:func:`next_selection`),
what changed (:func:`drift`), and the sampler that asks for each epoch's order when the epoch's
iterator is created (:class:`OnlineCurriculumSampler`). Probing and files are the RL stage's
(:mod:`egt.stages.rl`); requests for this exist in verl (PR #759, DynamicSampler, closed unmerged),
Reasoning360 (PR #153) and atropos (PR #428).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from egt.data.sampler import ResumableSampler
from egt.probe.figure2 import spearman
from egt.select.curriculum import Curriculum
from egt.select.methods import Selection
from egt.select.noise import noise_breakdown
from egt.select.scores import EntropyScore

__all__ = ["Reprobe", "reprobe_epochs", "order_epoch", "next_selection", "drift", "OnlineCurriculumSampler"]


@dataclass(frozen=True)
class Reprobe:
    """What an online curriculum re-computes at a re-probe."""

    every: int  # curriculum.reprobe_every: re-probe at epochs every, 2·every, … (epoch 0 is the SFT probe)
    online_selection: bool = False  # selection.online
    max_change: int | None = None  # selection.max_change: cap on samples entering (= leaving) per re-probe

    def is_reprobe_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` starts with a re-probe.

        >>> [Reprobe(2).is_reprobe_epoch(e) for e in range(5)]
        [False, False, True, False, True]
        """
        return self.every > 0 and epoch > 0 and epoch % self.every == 0

    def source_epoch(self, epoch: int) -> int:
        """The epoch whose probe orders ``epoch`` (0: the SFT probe).

        >>> [Reprobe(2).source_epoch(e) for e in range(5)]
        [0, 0, 2, 2, 4]
        """
        return 0 if self.every <= 0 else epoch - epoch % self.every


def reprobe_epochs(reprobe: Reprobe, epochs: int) -> list[int]:
    """The epochs (of ``epochs``) that start with a re-probe.

    >>> reprobe_epochs(Reprobe(1), 3), reprobe_epochs(Reprobe(2), 5)
    ([1, 2], [2, 4])
    """
    return [e for e in range(epochs) if reprobe.is_reprobe_epoch(e)]


def _scores(table: pd.DataFrame, score: EntropyScore) -> dict[str, float]:
    return dict(zip(table["id"].astype(str), np.asarray(score(table), dtype=np.float64)))


def order_epoch(
    ids: Sequence[str], scores: dict[str, float], curriculum: Curriculum, pool_pos: dict[str, int], seed: int
) -> list[str]:
    """``ids`` in the curriculum's order of their (new) ``scores``; ``pool_pos`` gives each id's
    position in the pool (the data order, for ``curriculum=none``).

    >>> from egt.select.curriculum import Ascending
    >>> order_epoch(["a", "b", "c"], {"a": 0.3, "b": 0.1, "c": float("inf")}, Ascending(), {}, 0)
    ['b', 'a', 'c']
    """
    arr = np.asarray([str(i) for i in ids])
    s = np.asarray([scores[i] for i in arr], dtype=np.float64)
    pos = np.asarray([pool_pos.get(i, k) for k, i in enumerate(arr)], dtype=np.int64)
    return arr[curriculum.first_epoch(arr, s, pos, seed)].tolist()


def next_selection(
    table: pd.DataFrame,
    previous: Sequence[str],
    score: EntropyScore,
    curriculum: Curriculum,
    reprobe: Reprobe,
    method: Selection | None = None,
    seed: int = 0,
    curriculum_seed: int = 0,
) -> list[str]:
    """The ids RL trains on after a re-probe, in the new epoch's order.

    ``table`` is the re-probe's table (rows ``id``, ``answer_entropy``, ``sentence_entropy``, …): the
    previously kept ids only (re-sort), or the whole probed pool (``reprobe.online_selection``). Without
    online selection the kept set is ``previous``, re-ordered by the new scores. With it, ``method``
    ranks the pool on the new scores and its first K = len(previous) form the target set; of the
    target's newcomers, the best-ranked ``max_change`` enter, and as many of the previous set that left
    the target, worst-ranked first, leave (K stays fixed, so every epoch has as many batches).

    Raises KeyError if ``table`` lacks a previously kept id.

    >>> from egt.select.curriculum import Ascending
    >>> from egt.select.methods import EntropySelection
    >>> from egt.select.scores import AnswerEntropy
    >>> t = pd.DataFrame({"id": list("abcde"), "answer_entropy": [0.5, 0.1, 0.4, 0.2, 0.3],
    ...                   "sentence_entropy": [0.0] * 5})
    >>> next_selection(t, ["a", "c"], AnswerEntropy(), Ascending(), Reprobe(1))
    ['c', 'a']
    >>> next_selection(t, ["a", "c"], AnswerEntropy(), Ascending(), Reprobe(1, True), EntropySelection())
    ['b', 'd']
    >>> next_selection(t, ["a", "c"], AnswerEntropy(), Ascending(), Reprobe(1, True, 1), EntropySelection())
    ['b', 'c']
    """
    scores = _scores(table, score)
    pool_pos = {i: k for k, i in enumerate(table["id"].astype(str))}
    previous = [str(i) for i in previous]
    missing = [i for i in previous if i not in scores]
    if missing:
        raise KeyError(f"the re-probe table lacks {len(missing)} kept ids (e.g. {missing[:3]})")
    kept = previous
    if reprobe.online_selection:
        if method is None:
            raise ValueError("online selection needs the selection method (selection.method)")
        ids = table["id"].astype(str).to_numpy()
        ranking = [str(i) for i in ids[method.rank(table, np.asarray([scores[i] for i in ids]), seed)]]
        place = {i: r for r, i in enumerate(ranking)}
        target = set(ranking[: len(previous)])
        old = set(previous)
        enter = [i for i in ranking if i in target and i not in old]  # best first
        leave = sorted((i for i in previous if i not in target), key=lambda i: -place[i])  # worst first
        n = min(len(enter), len(leave))
        if reprobe.max_change is not None:
            n = min(n, reprobe.max_change)
        gone = set(leave[:n])
        kept = [i for i in previous if i not in gone] + enter[:n]
    return order_epoch(kept, scores, curriculum, pool_pos, curriculum_seed)


def drift(
    table: pd.DataFrame,
    score: EntropyScore,
    previous_scores: dict[str, float],
    first_scores: dict[str, float],
    previous: Sequence[str],
    kept: Sequence[str],
) -> dict[str, Any]:
    """What a re-probe changed, for the log and the summary.

    - ``score_mean`` / ``score_median``: the new score over the probed rows with an answer (nats);
      ``no_answer``: rows without one (+inf);
    - ``spearman_previous`` / ``spearman_first``: rank correlation of the new scores with the previous
      probe's and with the first (SFT) probe's, over the ids both scored;
    - ``moved``: probed ids whose rank among the commonly scored ids changed; ``mean_rank_shift``;
    - ``overlap_previous``: |kept ∩ previous| / |kept|; ``entered`` / ``left``;
    - in the synthetic world, flipped / ambiguous among the kept (:func:`egt.select.noise.noise_breakdown`).

    >>> t = pd.DataFrame({"id": ["a", "b"], "answer_entropy": [0.2, 0.1], "sentence_entropy": [0.0, 0.0]})
    >>> from egt.select.scores import AnswerEntropy
    >>> d = drift(t, AnswerEntropy(), {"a": 0.1, "b": 0.2}, {"a": 0.1, "b": 0.2}, ["a", "b"], ["b", "a"])
    >>> d["spearman_previous"], d["moved"], d["overlap_previous"], d["entered"]
    (-1.0, 2, 1.0, 0)
    """
    new = _scores(table, score)
    finite = np.asarray([v for v in new.values() if np.isfinite(v)])
    out: dict[str, Any] = {
        "n_probed": len(new),
        "no_answer": int(len(new) - len(finite)),
        "score_mean": round(float(finite.mean()), 6) if len(finite) else None,
        "score_median": round(float(np.median(finite)), 6) if len(finite) else None,
    }
    for name, ref in (("previous", previous_scores), ("first", first_scores)):
        common = [i for i in new if i in ref and np.isfinite(new[i]) and np.isfinite(ref[i])]
        rho = spearman(np.asarray([new[i] for i in common]), np.asarray([ref[i] for i in common]))
        out[f"spearman_{name}"] = None if rho is None else round(rho, 4)
    common = sorted(i for i in new if i in previous_scores)
    if common:
        before = pd.Series([previous_scores[i] for i in common]).rank(method="first").to_numpy()
        after = pd.Series([new[i] for i in common]).rank(method="first").to_numpy()
        out["moved"] = int((before != after).sum())
        out["mean_rank_shift"] = round(float(np.abs(before - after).mean()), 3)
    old, now = set(map(str, previous)), set(map(str, kept))
    out.update(
        overlap_previous=round(len(old & now) / max(1, len(now)), 4), entered=len(now - old), left=len(old - now)
    )
    out.update(noise_breakdown(table, table["id"].astype(str).isin(now).to_numpy()))
    return out


class OnlineCurriculumSampler(ResumableSampler):
    """Row indices of each epoch, asked of ``order_for(epoch)`` when that epoch's iterator is created
    (Lightning creates it at the epoch's start, after the previous epoch's last step and checkpoint),
    so a re-probe sees the policy as it starts the epoch. ``n`` is the rows per epoch (K); the indices
    may point anywhere in the RL data set (the whole pool under online selection). Resumable like
    :class:`ResumableSampler`: a resumed epoch asks ``order_for`` again, which must then return the
    same order (the RL stage reads it back from the re-probe's files).
    """

    def __init__(self, n: int, order_for: Callable[[int], list[int]], seed: int = 0):
        super().__init__(n, seed=seed, shuffle=False)
        self.order_for = order_for
        self._orders: dict[int, list[int]] = {}

    def order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = [int(i) for i in self.order_for(epoch)]
            if len(order) != self.n:
                raise RuntimeError(f"epoch {epoch}: the online curriculum gave {len(order)} rows, expected {self.n}")
            self._orders[epoch] = order
        return self._orders[epoch]
