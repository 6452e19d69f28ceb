"""The difficulty prior's advantage and DAPO's zero-variance filter on hand-worked groups."""

import math

import pytest
import torch

from egt.rl.batch import RolloutBatch
from egt.rl.difficulty import DifficultyWeightedAdvantage, difficulty_weights
from egt.rl.zero_variance import ZeroVarianceFilter

# one group of G = 4 with accuracy rewards [1, 0, 0, 0] (acc_g = 0.25), rewards R = [2, 0.5, 0.5, 0.5]
BATCH = RolloutBatch.of_rewards(torch.tensor([2.0, 0.5, 0.5, 0.5]), 4, acc=torch.tensor([1.0, 0.0, 0.0, 0.0]))
W = math.exp(0.75)  # exp((1 - 0.25) / 1)


@pytest.mark.parametrize(
    "base,expected",
    [
        ("centred", [1.125, -0.375, -0.375, -0.375]),  # r − mean (mean 0.875)
        ("group", [1.5, -0.5, -0.5, -0.5]),  # ÷ unbiased σ = 0.75
        (
            "group_population",
            [1.5 * 2 / math.sqrt(3), -0.5 * 2 / math.sqrt(3), -0.5 * 2 / math.sqrt(3), -0.5 * 2 / math.sqrt(3)],
        ),  # ÷ population σ = 0.6495
    ],
)
def test_each_base_is_weighted_by_the_groups_difficulty(base, expected):
    adv = DifficultyWeightedAdvantage(base=base)(BATCH)
    torch.testing.assert_close(adv, W * torch.tensor(expected), atol=1e-4, rtol=0)


def test_harder_groups_weigh_more_and_bins_are_upper_inclusive():
    w = difficulty_weights(torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert w.tolist() == pytest.approx([math.e, W, math.exp(0.5), 1.0]) and bool((w[:-1] > w[1:]).all())
    bins = difficulty_weights(
        torch.tensor([0.25, 0.26, 0.5, 0.75, 0.76]), "bins", edges=[0.25, 0.5, 0.75], values=[2.0, 1.5, 1.0, 0.5]
    )
    assert bins.tolist() == [2.0, 1.5, 1.5, 1.0, 0.5]
    with pytest.raises(ValueError, match="one more value than edges"):
        DifficultyWeightedAdvantage(weight="bins", edges=[0.5], values=[1.0])
    with pytest.raises(ValueError, match="base must be"):
        DifficultyWeightedAdvantage(base="whitened")


def test_zero_variance_groups_are_dropped_on_accuracy_not_reward():
    # group 0: all right (R 2 and 1.5 differ by logic only); group 1: all wrong; group 2: mixed
    b = RolloutBatch.of_rewards(
        torch.tensor([2.0, 1.5, 0.0, 0.5, 2.0, 0.0]), 2, acc=torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    )
    keep, denom = ZeroVarianceFilter()(b, torch.zeros(6))
    assert keep.tolist() == [False, False, False, False, True, True] and torch.equal(keep, denom)
