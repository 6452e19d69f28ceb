"""Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 70, 2021) on the probe table, through ``cleanlab`` (an optional extra:
``pip install -e ".[cleanlab]"``), not a re-implementation.

A judge's probe gives the pred_probs confident learning needs for free: the probability of answer 1 vs 2,
from the answer-token distribution (``probe.answer_probs``) or from the frequencies of the draws' answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from egt.select.methods import Selection, rank_by
from egt.select.scores import MissingColumnError

__all__ = ["ConfidentLearning", "pred_probs_from_answer_tokens", "pred_probs_from_draws", "PRED_PROBS", "FILTER_BY"]

# cleanlab.filter.find_label_issues's filter_by values (cleanlab 2.x)
FILTER_BY = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)


def pred_probs_from_answer_tokens(answer_probs: Any) -> np.ndarray:
    """[N, 2] P(answer 1), P(answer 2) per sample: the mean of each draw's [p("1"), p("2")] over the draws that
    have them, renormalised to sum to 1 (the two digits rarely hold all of the mass; confident learning needs
    a distribution over the classes). NaN rows for samples without any such draw.

    >>> pred_probs_from_answer_tokens([[[0.6, 0.2], [float("nan")] * 2], [[float("nan")] * 2]]).round(3).tolist()
    [[0.75, 0.25], [nan, nan]]
    """
    out = np.full((len(answer_probs), 2), np.nan)
    for i, draws in enumerate(answer_probs):
        p = np.array([list(d) for d in draws], dtype=np.float64).reshape(-1, 2)  # [n, 2]
        p = p[np.isfinite(p).all(1)]
        if len(p) and p.sum() > 0:
            m = p.mean(0)
            out[i] = m / m.sum()
    return out


def pred_probs_from_draws(answers: Any) -> np.ndarray:
    """[N, 2] the frequencies of answers 1 and 2 among each sample's answered draws; NaN rows for samples
    without an answered draw.

    >>> pred_probs_from_draws([[1, 2, 2, None], [None]]).round(4).tolist()
    [[0.3333, 0.6667], [nan, nan]]
    """
    out = np.full((len(answers), 2), np.nan)
    for i, draws in enumerate(answers):
        c = np.array([sum(a == 1 for a in draws), sum(a == 2 for a in draws)], dtype=np.float64)
        if c.sum() > 0:
            out[i] = c / c.sum()
    return out


PRED_PROBS = {
    "answer_token": ("answer_probs", pred_probs_from_answer_tokens),
    "draws": ("answers", pred_probs_from_draws),
}


def _find_label_issues() -> Any:
    try:
        from cleanlab.filter import find_label_issues
    except ImportError as exc:
        raise ImportError(
            f'selection=confident_learning uses cleanlab, which is not installed ({exc}): pip install -e ".[cleanlab]"'
        ) from exc
    return find_label_issues


class ConfidentLearning(Selection):
    """Drop the samples confident learning flags as label issues (``selection=confident_learning``), keep the
    rest ordered by the entropy score (ties by id). pred_probs [N, 2] (``pred_probs``): ``answer_token`` =
    the mean over the answered draws of [p("1"), p("2")] at the answer token, renormalised (needs
    ``probe.answer_probs=true``; one greedy draw is enough), or ``draws`` = the frequencies of answers 1 and 2
    among the answered draws (needs ``probe.n`` ≥ 2 sampled draws); given labels = dataset label − 1.
    ``cleanlab.filter.find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)`` flags (cleanlab's
    default rule ``prune_by_noise_rate``; every rule of :data:`FILTER_BY`), in-sample (the judge's own
    probabilities on the pool it is about to train on, not cross-validated: the paper's recommended
    out-of-sample pred_probs would need k judges). A filter: no size keeps every unflagged sample;
    k / fraction / percentile then apply within them.

    egt's choices where the source is silent: a sample without pred_probs (no answered draw, or no draw
    whose answer token is a bare digit) is not given to cleanlab and is kept (no evidence against its label;
    counted as ``cl_no_pred_probs``; its entropy score is +inf when it has no answer, so it sorts last);
    ``n_jobs=1`` (deterministic, no worker processes)."""

    name = "confident_learning"
    filters = True

    def __init__(self, pred_probs: str = "answer_token", filter_by: str = "prune_by_noise_rate"):
        if pred_probs not in PRED_PROBS:
            raise ValueError(
                f"selection confident_learning: pred_probs must be one of {list(PRED_PROBS)}, got {pred_probs!r}"
            )
        if filter_by not in FILTER_BY:
            raise ValueError(
                f"selection confident_learning: filter_by must be one of {list(FILTER_BY)}, got {filter_by!r}"
            )
        _find_label_issues()  # fail at config validation, before the probe runs, if cleanlab is missing
        self.pred_probs, self.filter_by = pred_probs, filter_by
        self.probe_settings = {"answer_probs": True} if pred_probs == "answer_token" else {}

    def check_probe(self, n: int, temperature: float) -> str | None:
        if self.pred_probs == "draws" and (n < 2 or temperature <= 0):
            return (
                "selection=confident_learning with pred_probs=draws needs at least 2 sampled probe outputs per "
                f"sample: write probe.n={max(n, 2)} probe.temperature={temperature if temperature > 0 else 1.0} "
                "(or selection.method.pred_probs=answer_token probe.answer_probs=true)"
            )
        return None

    def flags(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(flagged [N] bool, has pred_probs [N] bool) for the probe table."""
        column, make = PRED_PROBS[self.pred_probs]
        for col in (column, "label"):
            if col not in table:
                fix = "probe with probe.answer_probs=true" if col == "answer_probs" else "a probe table of egt's probe"
                raise MissingColumnError(f"selection=confident_learning: the probe table has no {col!r} column: {fix}")
        probs = make(table[column].tolist())  # [N, 2]
        have = np.isfinite(probs).all(1)
        labels = table["label"].to_numpy(dtype=np.int64) - 1  # [N] in {0, 1}
        bad = sorted(set(labels.tolist()) - {0, 1})
        if bad:
            raise ValueError(f"selection=confident_learning: labels must be 1 or 2, got {[b + 1 for b in bad]}")
        flagged = np.zeros(len(table), dtype=bool)
        if have.any():
            find = _find_label_issues()
            flagged[have] = find(labels[have], probs[have], filter_by=self.filter_by, n_jobs=1)
        return flagged, have

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        flagged, have = self.flags(table)
        self._stats = {
            "cl_filter_by": self.filter_by,
            "cl_pred_probs": self.pred_probs,
            "cl_flagged": int(flagged.sum()),
            "cl_no_pred_probs": int((~have).sum()),
        }
        ranked = rank_by(scores, table["id"].to_numpy())
        return ranked[~flagged[ranked]]
