"""Selection rules on a hand-made probe table: sizes, bands, ties, seeds, accuracy order, scores."""

import math

import numpy as np
import pandas as pd
import pytest

from egt.select.curriculum import Ascending, DataOrder
from egt.select.methods import AccuracySelection, AllSelection, EntropySelection, RandomSelection
from egt.select.noise import auroc, noise_breakdown
from egt.select.scores import AnswerEntropy, MixEntropy, SentenceEntropy
from egt.select.selection import band_window, percentile, select, selection_size

INF = math.inf


@pytest.fixture
def table():
    # rows deliberately not in id order; ids e and b tie on answer entropy
    return pd.DataFrame(
        {
            "id": ["e", "a", "d", "b", "c", "f"],
            "answer_entropy": [0.2, 0.1, INF, 0.2, 0.9, 0.5],
            "sentence_entropy": [1.0, 3.0, 2.0, 1.0, 0.5, 0.0],
            "correct_score": [1.0, 0.0, 0.5, 1.0, 0.0, 1.0],
            "flipped": [False, False, True, False, True, False],
            "ambiguous": [False, False, False, False, False, True],
        }
    )


def ids(table, **kw):
    kw.setdefault("curriculum", Ascending())
    return select(
        table, kw.pop("score", AnswerEntropy()), kw.pop("method", EntropySelection()), kw.pop("curriculum"), **kw
    )["ids"]


def test_scores(table):
    assert AnswerEntropy()(table).tolist() == [0.2, 0.1, INF, 0.2, 0.9, 0.5]
    assert SentenceEntropy()(table).tolist() == [1.0, 3.0, 2.0, 1.0, 0.5, 0.0]
    mix = MixEntropy()(table)
    assert mix[:2].tolist() == pytest.approx([0.2, 0.3]) and math.isinf(mix[2]) and mix[5] == 0.0
    t = table.copy()
    t.loc[2, "sentence_entropy"] = 0.0
    assert math.isinf(MixEntropy()(t)[2])  # inf × 0 → inf, not NaN


def test_entropy_lowest_first_with_id_tie_break(table):
    assert ids(table, k=3) == ["a", "b", "e"]
    assert ids(table.iloc[::-1].reset_index(drop=True), k=3) == ["a", "b", "e"]  # row order irrelevant


def test_sizes(table):
    assert ids(table, k=100) == ["a", "b", "e", "f", "c", "d"]
    assert len(ids(table, fraction=0.5)) == 3
    assert len(ids(table, fraction=1 / 6)) == 1
    # q_50 of [0.1, 0.2, 0.2, 0.5, 0.9, inf] = 0.35: keep e < 0.35
    assert ids(table, percentile_p=50) == ["a", "b", "e"]
    assert ids(table, k=2, fraction=0.9) == ["a", "b"]  # k wins


def test_percentile_and_size_helpers():
    assert percentile(np.array([0.1, 0.2, 0.2, 0.5, 0.9, INF]), 50) == pytest.approx(0.35)
    assert percentile(np.array([0.1, INF]), 90) == INF
    assert selection_size(np.array([1.0, 2.0, INF]), percentile_p=100) == 2  # strict: e < q_p
    assert selection_size(np.array([1.0, 2.0])) == 2  # no size: every candidate (validation asks a ranking for one)


def test_bands(table):
    assert band_window(6, 2, "mid") == slice(2, 4)
    assert ids(table, k=2, band="low") == ["a", "b"]
    assert ids(table, k=2, band="mid") == ["e", "f"]  # ranking a b e f c d: centred on the median
    assert ids(table, k=2, band="high") == ["c", "d"]  # +inf (no answer) is the highest
    with pytest.raises(ValueError):
        band_window(6, 2, "top")


def test_random_is_seeded_and_order_free(table):
    a = ids(table, method=RandomSelection(), k=3, seed=1, curriculum=DataOrder())
    b = ids(table.iloc[::-1].reset_index(drop=True), method=RandomSelection(), k=3, seed=1, curriculum=DataOrder())
    assert set(a) == set(b)
    draws = {tuple(sorted(ids(table, method=RandomSelection(), k=3, seed=s))) for s in range(20)}
    assert len(draws) > 3


def test_accuracy_lowest_correctness_first(table):
    sel = select(table, AnswerEntropy(), AccuracySelection(), DataOrder(), k=3)
    assert set(sel["ids"]) == {"a", "c", "d"}  # scores 0, 0, 0.5
    assert ids(table, method=AccuracySelection(), k=2) == ["a", "c"]  # ties by id


def test_all_ignores_size(table):
    sel = select(table, AnswerEntropy(), AllSelection(), Ascending(), k=1)
    assert sel["ids"] == ["a", "b", "e", "f", "c", "d"] and sel["band"] is None


def test_contract_fields(table):
    sel = select(table, AnswerEntropy(), EntropySelection(), Ascending(), k=100, curriculum_seed=7)
    assert sel["scores"]["a"] == 0.1 and sel["scores"]["d"] is None  # +inf as JSON null
    assert sel["seed"] == 7 and sel["shuffle_each_epoch"] is False
    assert (sel["method"], sel["curriculum"], sel["score"], sel["n_pool"]) == ("entropy", "ascending", "answer", 6)


def test_noise_breakdown(table):
    kept = table["id"].isin(["a", "b", "e"]).to_numpy()
    nb = noise_breakdown(table, kept)
    assert (nb["flipped_kept"], nb["flipped_dropped"]) == (0, 2)
    assert nb["flipped_precision"] == pytest.approx(2 / 3, abs=1e-4) and nb["flipped_recall"] == 1.0
    assert nb["noisy_precision"] == 1.0 and nb["ambiguous_dropped"] == 1
    assert noise_breakdown(table.drop(columns=["flipped"]), kept) == {}


def test_auroc_ties_count_half():
    assert auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert auroc(np.array([0.0, INF]), np.array([False, True])) == 1.0
    assert auroc(np.array([1.0]), np.array([True])) is None


class CorrectAtLeastHalf(EntropySelection):
    """A filter: the samples the judge gets right at least half the time, lowest entropy first."""

    filters = True

    def rank(self, table, scores, seed):
        ranked = super().rank(table, scores, seed)
        return ranked[table["correct_score"].to_numpy()[ranked] >= 0.5]


def test_a_filtering_method_keeps_every_sample_that_passes_then_may_be_sized(table):
    # correct_score >= 0.5: e (0.2), d (inf), b (0.2), f (0.5); by entropy, ties by id: b, e, f, d
    assert ids(table, method=CorrectAtLeastHalf()) == ["b", "e", "f", "d"]  # no size: every candidate
    assert ids(table, method=CorrectAtLeastHalf(), k=2) == ["b", "e"]  # sized over the candidates
    assert ids(table, method=CorrectAtLeastHalf(), fraction=0.5, band="high") == ["f", "d"]
    out = select(table, AnswerEntropy(), CorrectAtLeastHalf(), Ascending(), k=3)
    assert out["n_pool"] == 6 and out["n_candidates"] == 4
    assert "n_candidates" not in select(table, AnswerEntropy(), EntropySelection(), Ascending(), k=3)  # ranks all


def test_only_a_method_that_ranks_every_sample_needs_a_size():
    from egt.config import _ranks_every_sample

    assert _ranks_every_sample({"_target_": "egt.select.methods.EntropySelection"})
    assert not _ranks_every_sample({"_target_": "egt.select.methods.AllSelection"})
    assert not _ranks_every_sample({"_target_": f"{__name__}.CorrectAtLeastHalf"})


def test_pass_rate_band_keeps_the_inclusive_band_easy_first():
    from egt.select.methods import PassRateBand
    from egt.select.scores import Difficulty

    # n = 8 draws: pass rates 0, 1/8, 3/8, 6/8, 7/8, 1 and one exactly at each bound
    t = pd.DataFrame(
        {
            "id": list("abcdefgh"),
            "answer_entropy": [0.1] * 8,
            "sentence_entropy": [1.0] * 8,
            "correct_score": [0.0, 0.125, 0.375, 0.75, 0.875, 1.0, 0.1, 0.87],
        }
    )
    out = select(t, Difficulty(), PassRateBand(low=0.1, high=0.87), Ascending())
    # kept: b (.125), c (.375), d (.75), g (0.1 = low), h (0.87 = high); easy first = ascending 1 - rate
    assert out["ids"] == ["h", "d", "c", "b", "g"] and out["n_candidates"] == 5
    assert out["scores"]["h"] == pytest.approx(0.13) and out["scores"]["g"] == pytest.approx(0.9)
    assert select(t, Difficulty(), PassRateBand(), Ascending(), k=2)["ids"] == ["h", "d"]  # sized in the band
    with pytest.raises(ValueError, match="low <= high"):
        PassRateBand(low=0.9, high=0.1)


def test_pass_rate_says_which_probe_settings_it_needs():
    from egt.select.methods import PassRateBand

    assert PassRateBand().check_probe(8, 1.0) is None
    assert PassRateBand().check_probe(1, 0.0) == (
        "selection=pass_rate needs at least 8 sampled probe outputs per sample: write probe.n=8 probe.temperature=1.0"
    )
    assert "probe.n=16" in PassRateBand(min_draws=16).check_probe(8, 0.7)
