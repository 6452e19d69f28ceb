"""BIS, the Balanced-Information Score of Li et al. 2026 ("Training Data Efficiency in Multimodal Process
Reward Models", arXiv 2602.04145), as its released code computes it: ``compute_bis`` in
scripts/build_bis_subset.py, JinYuanLi0012/Balanced-Info-MPRM@81c3de613427d8f2cf6f379419ffd97050dde6df.

For one rollout of process-reward data with Monte-Carlo step scores s_j: y_j = 1 if s_j > 0; p = mean(y_j);
R = the mean of s_j over the positive steps (R = 1 when no step is positive: "an all-negative rollout treated
as a noise-free negative"); BIS = (p (1 − p) + α) · R, higher = kept first (their README: the top 10% per source
with α = 0.2, or 25% with α = 0.05). egt's judges are outcome judges without step labels: :func:`bis_score` is
the formula itself, :class:`BISAnalogue` (``selection=bis``) applies it to an outcome judge's probe draws as an
analogue (p over the probe's draws, R the probability on the label's answer token: ``probe.answer_probs``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from egt.select.methods import Selection, rank_by
from egt.select.scores import MissingColumnError

__all__ = ["bis_score", "bis_analogue", "BISAnalogue"]


def bis_score(step_scores: Sequence[float], alpha: float) -> float:
    """BIS of one rollout from its step scores (any real numbers; > 0 is a positive step).

    >>> bis_score([0.5, -0.2, 0.0, 1.0], alpha=0.2)  # p = 1/2, R = 0.75: (0.25 + 0.2) · 0.75
    0.3375
    >>> bis_score([-1.0, 0.0], alpha=0.05), bis_score([0.4, 0.8], alpha=0.05)  # no positive: R = 1; all: p(1−p) = 0
    (0.05, 0.030000000000000006)
    """
    n = len(step_scores)
    if n == 0:
        raise ValueError("bis_score: a rollout without steps")
    positive = [s for s in step_scores if s > 0.0]
    p = len(positive) / n
    reward = sum(positive) / len(positive) if positive else 1.0
    return (p * (1.0 - p) + alpha) * reward


def bis_analogue(answers: Sequence[Any], probs: Sequence[Sequence[float]], label: int, alpha: float) -> float:
    """The BIS analogue of one probed sample: :func:`bis_score` with one "step" per probe draw, the step
    score being p(label's digit) at that draw's answer token when the draw's answer equals the label
    (a positive step) and 0 otherwise (a negative step: a wrong answer or none). So p = the pass rate
    (``correct_score``), R = the mean p(label) over the agreeing draws (R = 1 when none agrees, as
    ``compute_bis`` treats an all-negative rollout). NaN (unscored) when an agreeing draw has no
    probability (its answer token was not a bare digit: :mod:`egt.probe.answer_probs`).

    >>> bis_analogue([2, 2, 1, None], [[0.1, 0.8], [0.3, 0.6], [0.9, 0.1], [float("nan")] * 2], 2, 0.05)
    0.21
    >>> # p = 2/4, R = (0.8 + 0.6) / 2: (0.25 + 0.05) · 0.7
    >>> bis_analogue([1, None], [[0.7, 0.2], [float("nan")] * 2], 2, 0.05)  # none agrees: R = 1
    0.05
    """
    steps = []
    for answer, p in zip(answers, probs):
        if answer == label:
            if math.isnan(p[label - 1]):
                return math.nan
            steps.append(p[label - 1])
        else:
            steps.append(0.0)
    return bis_score(steps, alpha)


class BISAnalogue(Selection):
    """BIS analogue for outcome judges (``selection=bis``): BIS = (p (1 − p) + α) · R per sample
    (:func:`bis_analogue`: p = pass rate over the probe's n sampled draws, in [0, 1]; R = the mean
    probability the judge puts on the label's answer token among the draws that give the label, in (0, 1];
    α ≥ 0), highest first, keeping the top ``ratio`` of the scored samples within each source (``per_source``,
    the table's ``source`` column) or of the whole pool: max(1, ⌊m · ratio⌋) of a group's m scored samples,
    as ``build_subset`` in scripts/build_bis_subset.py of JinYuanLi0012/Balanced-Info-MPRM@81c3de6 (one
    annotation file = one source there). Defaults α = 0.05, ratio = 0.25: that script's argparse defaults
    and its README's 25% recipe (the README's other: ratio 0.1 with α = 0.2). A filter: no size keeps every
    sample kept per source; k / fraction / percentile then apply within them, in BIS order (ties by id).

    An analogue, not the paper's method: Li et al. score process-reward rollouts by their Monte-Carlo step
    labels; egt's judges give one outcome per draw, so a draw stands for a step and its p(label) for the step's
    MC score. egt's choices where the source is silent: a draw without an answer is a negative step; a sample
    whose agreeing draw lacks a probability is unscored (never kept, counted as ``bis_unscored``, as the
    script skips rollouts it cannot score); ``ratio`` null keeps every scored sample (a ranking). Needs
    ``probe.n`` ≥ 2 sampled draws and ``probe.answer_probs=true``."""

    name = "bis"
    filters = True
    probe_settings = {"answer_probs": True}

    def __init__(self, alpha: float = 0.05, ratio: float | None = 0.25, per_source: bool = True):
        if alpha < 0:
            raise ValueError(f"selection bis: alpha must be >= 0, got {alpha}")
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise ValueError(f"selection bis: ratio must be in (0, 1] or null, got {ratio} (e.g. 0.25)")
        self.alpha, self.ratio, self.per_source = float(alpha), ratio, bool(per_source)

    def check_probe(self, n: int, temperature: float) -> str | None:
        if n < 2 or temperature <= 0:
            return (
                "selection=bis needs at least 2 sampled probe outputs per sample (p is a pass rate over them): "
                f"write probe.n={max(n, 2)} probe.temperature={temperature if temperature > 0 else 1.0}"
            )
        return None

    def scores(self, table: pd.DataFrame) -> np.ndarray:
        """BIS analogue of every row.  → [N] (NaN = unscored)"""
        for col in ("answers", "answer_probs", "label"):
            if col not in table:
                raise MissingColumnError(
                    f"selection=bis: the probe table has no {col!r} column: probe with probe.answer_probs=true"
                )
        rows = zip(table["answers"], table["answer_probs"], table["label"])
        return np.array([bis_analogue(list(a), [list(p) for p in ps], int(y), self.alpha) for a, ps, y in rows])

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        bis = self.scores(table)  # [N]
        ids = table["id"].to_numpy()
        if self.per_source and "source" not in table:
            raise MissingColumnError(
                "selection=bis per_source: the probe table has no 'source' column: probe with "
                "probe.answer_probs=true, or write selection.method.per_source=false"
            )
        groups = table["source"].astype(str).to_numpy() if self.per_source else np.zeros(len(table), dtype=str)
        scored = np.isfinite(bis)
        kept, per_group = [], {}
        for g in sorted(set(groups[scored])):
            rows = np.flatnonzero(scored & (groups == g))
            order = rows[rank_by(-bis[rows], ids[rows])]  # highest BIS first, ties by id
            top = len(order) if self.ratio is None else max(1, int(len(order) * self.ratio))
            kept.append(order[:top])
            per_group[g] = int(top)
        kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        self._stats = {
            "method_title": "BIS analogue",
            "bis_alpha": self.alpha,
            "bis_ratio": self.ratio,
            "bis_per_source": self.per_source,
            "bis_unscored": int((~scored).sum()),
            "bis_kept_mean": round(float(bis[kept].mean()), 4) if len(kept) else None,
            **({"bis_kept_per_source": per_group} if self.per_source else {}),
        }
        return kept[rank_by(-bis[kept], ids[kept])]
