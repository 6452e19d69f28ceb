"""BIS on hand-made step scores, against the formula of the released compute_bis."""

import pytest

from egt.select.bis import bis_score


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
