"""selection=confident_learning on a hand-made probe table whose label issues are known."""

import math

import numpy as np
import pandas as pd
import pytest

from egt.select.confident import ConfidentLearning, pred_probs_from_answer_tokens

pytest.importorskip("cleanlab")

NAN2 = [math.nan, math.nan]


def _table():
    """Label 1: four samples the judge puts at [0.9, 0.1] and one (f1, flipped) at [0.1, 0.9]; label 2: four
    at [0.2, 0.8] and one (f2, flipped) at [0.85, 0.15]; one sample (z) never answered. Per-class thresholds
    (cleanlab: the mean self-confidence of the class) t_1 = (4 · 0.9 + 0.1) / 5 = 0.74, t_2 = (4 · 0.8 +
    0.15) / 5 = 0.67: f1's p(2) = 0.9 ≥ t_2 and f2's p(1) = 0.85 ≥ t_1 put exactly those two off the confident
    joint's diagonal, every other sample on it, so every rule flags f1 and f2 only. The per-draw
    probabilities hold half the mass and a draw without an answer, to check the mean and renormalisation."""
    rows = []
    for i in range(4):
        rows.append((f"a{i}", 1, [[0.45, 0.05], NAN2], [1, None], 0.1 * i))
        rows.append((f"b{i}", 2, [[0.1, 0.4]], [2], 0.05 + 0.1 * i))
    rows.append(("f1", 1, [[0.05, 0.45]], [2], 0.01))
    rows.append(("f2", 2, [[0.425, 0.075], [0.425, 0.075]], [1, 1], 0.02))
    rows.append(("z", 2, [NAN2], [None], math.inf))
    return pd.DataFrame(rows, columns=["id", "label", "answer_probs", "answers", "answer_entropy"])


def test_pred_probs_are_the_renormalised_mean_over_answered_draws():
    pp = pred_probs_from_answer_tokens(_table()["answer_probs"].tolist())
    assert pp[0] == pytest.approx([0.9, 0.1]) and pp[9] == pytest.approx([0.85, 0.15]) and np.isnan(pp[10]).all()


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "confident_learning", "both", "predicted_neq_given"])
def test_the_known_label_issues_are_flagged_and_dropped(filter_by):
    t = _table()
    cl = ConfidentLearning(pred_probs="answer_token", filter_by=filter_by)
    scores = t["answer_entropy"].to_numpy()
    kept = t["id"].to_numpy()[cl.rank(t, scores, 0)].tolist()
    assert kept == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "z"]  # entropy order; z (no answer) kept, last
    assert cl.stats() == {
        "cl_filter_by": filter_by,
        "cl_pred_probs": "answer_token",
        "cl_flagged": 2,
        "cl_no_pred_probs": 1,
    }


def test_pred_probs_from_the_draws_frequencies():
    """f2's two draws both say 1 against label 2, f1's one says 2 against 1; the rest agree: frequencies
    [1, 0] / [0, 1] put f1 and f2 off the diagonal."""
    t = _table()
    cl = ConfidentLearning(pred_probs="draws")
    kept = set(t["id"].to_numpy()[cl.rank(t, t["answer_entropy"].to_numpy(), 0)])
    assert kept == set(t["id"]) - {"f1", "f2"} and cl.stats()["cl_flagged"] == 2
    assert "probe.n=2 probe.temperature=1.0" in cl.check_probe(1, 0.0) and cl.probe_settings == {}
    assert ConfidentLearning().check_probe(1, 0.0) is None  # one greedy draw has answer-token probabilities
    assert ConfidentLearning().probe_settings == {"answer_probs": True}


def test_bad_settings_and_a_table_without_the_columns_say_what_to_write():
    with pytest.raises(ValueError, match="filter_by must be one of"):
        ConfidentLearning(filter_by="prune")
    with pytest.raises(ValueError, match="pred_probs must be one of"):
        ConfidentLearning(pred_probs="softmax")
    with pytest.raises(KeyError, match="probe.answer_probs=true"):
        ConfidentLearning().rank(_table().drop(columns="answer_probs"), np.zeros(11), 0)


def test_a_missing_cleanlab_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_cleanlab(name, *a, **k):
        if name.startswith("cleanlab"):
            raise ImportError("No module named 'cleanlab'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cleanlab)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[cleanlab\]"'):
        ConfidentLearning()
