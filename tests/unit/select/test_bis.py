"""BIS on hand-made step scores, against the formula of the released compute_bis; its outcome-judge analogue
(selection=bis) on a hand-made probe table."""

import math

import numpy as np
import pandas as pd
import pytest

from egt.select.bis import BISAnalogue, bis_score
from egt.select.scores import MissingColumnError


@pytest.mark.parametrize(
    "scores,alpha,expected",
    [
        ([-0.5, 0.0, -1.0], 0.2, 0.2),  # no positive step: p = 0, R = 1 → α
        ([0.3, 0.6, 0.9], 0.2, 0.2 * 0.6),  # all positive: p (1 − p) = 0, R = mean 0.6
        ([0.8, -0.1, 0.4, 0.0], 0.05, (0.25 + 0.05) * 0.6),  # mixed: p = 1/2, R = (0.8 + 0.4) / 2
        ([1.0, 0.0, 0.0, 0.0], 0.0, 0.1875),  # p = 1/4: 3/16 · 1
    ],
)
def test_bis_matches_the_formula(scores, alpha, expected):
    assert bis_score(scores, alpha) == pytest.approx(expected)


def test_zero_counts_as_negative_and_an_empty_rollout_is_refused():
    assert bis_score([0.0], 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        bis_score([], 0.2)


# ----------------------------------------------------------------- the outcome-judge analogue (selection=bis)
NAN2 = [math.nan, math.nan]


def _table():
    """Six samples of two sources, 4 draws each, label 2 unless said. Hand-worked BIS (α = 0.05):
    a: 2 of 4 agree, p(label) 0.8, 0.6 → (0.25 + 0.05) · 0.7 = 0.21
    b: 4 of 4 agree, p(label) 0.9 each → (0 + 0.05) · 0.9 = 0.045
    c: 1 of 4 agrees (label 1), p 0.4, the rest no answer → (0.1875 + 0.05) · 0.4 = 0.095
    d: none agrees → R = 1: 0.05
    e: 3 of 4 agree, p 0.5, 0.7, 0.6 → (0.1875 + 0.05) · 0.6 = 0.1425
    f: an agreeing draw without a probability → unscored
    """
    rows = [
        ("a", "s1", 2, [2, 2, 1, None], [[0.1, 0.8], [0.3, 0.6], [0.9, 0.1], NAN2]),
        ("b", "s1", 2, [2, 2, 2, 2], [[0.05, 0.9]] * 4),
        ("c", "s1", 1, [1, None, None, None], [[0.4, 0.5], NAN2, NAN2, NAN2]),
        ("d", "s2", 2, [1, 1, None, 1], [[0.9, 0.1], [0.8, 0.1], NAN2, [0.7, 0.2]]),
        ("e", "s2", 2, [2, 2, 2, 1], [[0.4, 0.5], [0.2, 0.7], [0.3, 0.6], [0.6, 0.3]]),
        ("f", "s2", 2, [2, 1, 1, 1], [NAN2, [0.6, 0.3], [0.6, 0.3], [0.6, 0.3]]),
    ]
    return pd.DataFrame(rows, columns=["id", "source", "label", "answers", "answer_probs"])


def test_the_analogue_per_sample_is_bis_of_the_draws():
    got = BISAnalogue(alpha=0.05).scores(_table())
    assert got[:5] == pytest.approx([0.21, 0.045, 0.095, 0.05, 0.1425], abs=1e-12) and math.isnan(got[5])


def test_top_ratio_per_source_then_overall_as_the_released_script_rounds():
    t = _table()
    scores = np.zeros(len(t))
    # s1 has 3 scored: max(1, ⌊3 · 0.5⌋) = 1 → a; s2 has 2 scored (f unscored): 1 → e. Best first.
    sel = BISAnalogue(alpha=0.05, ratio=0.5, per_source=True)
    assert t["id"].to_numpy()[sel.rank(t, scores, 0)].tolist() == ["a", "e"]
    stats = sel.stats()
    assert stats["method_title"] == "BIS analogue" and stats["bis_unscored"] == 1
    assert stats["bis_kept_per_source"] == {"s1": 1, "s2": 1}
    # overall: 5 scored, ⌊5 · 0.5⌋ = 2 → a, e; ratio null keeps all 5 scored, highest first
    assert t["id"].to_numpy()[BISAnalogue(0.05, 0.5, per_source=False).rank(t, scores, 0)].tolist() == ["a", "e"]
    everything = BISAnalogue(0.05, None, per_source=False).rank(t, scores, 0)
    assert t["id"].to_numpy()[everything].tolist() == ["a", "e", "c", "d", "b"]


def test_bis_needs_sampled_draws_answer_probs_and_the_source():
    assert "probe.n=2 probe.temperature=1.0" in BISAnalogue().check_probe(1, 0.0)
    assert BISAnalogue().check_probe(4, 0.7) is None and BISAnalogue.probe_settings == {"answer_probs": True}
    with pytest.raises(MissingColumnError, match="'answer_probs'.*probe.answer_probs=true"):
        BISAnalogue().rank(_table().drop(columns="answer_probs"), np.zeros(6), 0)
    with pytest.raises(MissingColumnError, match="per_source=false"):
        BISAnalogue().rank(_table().drop(columns="source"), np.zeros(6), 0)
    with pytest.raises(ValueError, match="ratio"):
        BISAnalogue(ratio=1.5)
