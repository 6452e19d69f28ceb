"""From a probe table to the ordered list of ids RL trains on (paper §2.3–2.4, docs/design.md §4.2–4.3).

``select`` = score (entropy variant) → rank (selection method: every sample in preference order, or
only those that pass its filter) → window over those candidates (size and band; no size keeps them
all) → order (curriculum). The result is the ``selection.json``
contract of :mod:`egt.select.curriculum`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from egt.select.curriculum import Curriculum
from egt.select.methods import Selection
from egt.select.scores import EntropyScore

__all__ = ["percentile", "selection_size", "band_window", "select"]


def percentile(values: np.ndarray, p: float) -> float:
    """The p-th percentile (linear interpolation, as numpy) with +inf treated as the largest value.

    >>> percentile(np.array([1.0, 2.0, 3.0, np.inf]), 50)
    2.5
    >>> percentile(np.array([1.0, np.inf]), 100)
    inf
    """
    s = np.sort(np.asarray(values, dtype=np.float64))
    pos = p / 100 * (len(s) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if lo == hi or s[lo] == s[hi]:
        return float(s[lo])
    if math.isinf(s[hi]):
        return math.inf
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def selection_size(
    scores: np.ndarray, k: int | None = None, fraction: float | None = None, percentile_p: float | None = None
) -> int:
    """How many of N candidates to keep: ``k``, else #{e < q_p}, else round(fraction × N); all N when
    none is set (a filtering method keeps every sample that passes).

    >>> selection_size(np.arange(10.0), k=3), selection_size(np.arange(10.0), fraction=0.25)
    (3, 2)
    >>> selection_size(np.arange(10.0), percentile_p=50), selection_size(np.arange(10.0))  # q_50 = 4.5: keeps 0..4
    (5, 10)
    """
    n = len(scores)
    if k is not None:
        return min(int(k), n)
    if percentile_p is not None:
        return int((np.asarray(scores) < percentile(scores, percentile_p)).sum())
    if fraction is not None:
        return min(n, int(round(fraction * n)))
    return n


def band_window(n: int, size: int, band: str) -> slice:
    """Which part of a ranking of length ``n`` to keep (Table 5's low / mid / high).

    >>> band_window(10, 4, "low"), band_window(10, 4, "mid"), band_window(10, 4, "high")
    (slice(0, 4, None), slice(3, 7, None), slice(6, 10, None))
    """
    if band == "low":
        return slice(0, size)
    if band == "high":
        return slice(n - size, n)
    if band == "mid":
        start = (n - size) // 2
        return slice(start, start + size)
    raise ValueError(f"band must be low, mid or high, got {band!r}")


def _json_score(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # +inf (no answer) as null: plain JSON


def select(
    table: pd.DataFrame,
    score: EntropyScore,
    method: Selection,
    curriculum: Curriculum,
    k: int | None = None,
    fraction: float | None = None,
    percentile_p: float | None = None,
    band: str = "low",
    seed: int = 0,
    curriculum_seed: int = 0,
) -> dict[str, Any]:
    """The ``selection.json`` dict: ids in epoch 0's order, their scores, how to reshuffle (and, for a
    curriculum whose epochs see different samples, ``stages``: :mod:`egt.select.two_stage`)."""
    scores = score(table)  # [N]
    ranking = np.asarray(method.rank(table, scores, seed), dtype=np.int64)  # [M ≤ N] candidates, best first
    size = selection_size(scores[ranking], k, fraction, percentile_p) if method.sized else len(ranking)
    kept = ranking[band_window(len(ranking), size, band)]  # [K] row indices
    ids = table["id"].to_numpy()[kept]
    order = curriculum.first_epoch(ids, scores[kept], kept, curriculum_seed)
    kept = kept[order]
    stages = curriculum.stages(table["id"].to_numpy()[kept], scores[kept])  # None unless epochs differ
    out = {
        "ids": [str(i) for i in table["id"].to_numpy()[kept]],
        "shuffle_each_epoch": curriculum.shuffle_each_epoch,
        "seed": int(curriculum_seed),
        "scores": {str(i): _json_score(s) for i, s in zip(table["id"].to_numpy()[kept], scores[kept])},
        "method": method.name,
        "curriculum": curriculum.name,
        "score": score.name,
        "band": band if method.sized else None,
        "n_pool": int(len(table)),
    } | ({"n_candidates": int(len(ranking))} if len(ranking) < len(table) else {})  # a filtering method
    return out | ({"stages": stages} if stages is not None else {})
