"""Rejection sampling (egt.sft.rejection) on a hand-made probe table: the exact trajectories each keep rule
keeps, and selection=incorrect's complement of them."""

import math

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset

from egt.rl.rules import StrictFormat, UnifiedRewardThinkFormat
from egt.select.methods import IncorrectSelection
from egt.sft.rejection import keep_correct, rejection_summary, trajectory_set

OK1, OK2 = "<think>a</think><answer>1</answer>", "<think>b</think><answer>2</answer>"
OK2b = "<think>c</think>\n<answer>2</answer>"  # another right text for label 2
BAD2 = "<think>d</think></think><answer>2</answer>"  # right verdict (parse may read it), wrong shape


def _table():
    # a: label 1, draws right, wrong, right (distinct texts) → first keeps draw 0, all keeps 0 and 2
    # b: label 2, the same right text twice and a third → all keeps draws 0 and 2 (distinct texts only)
    # c: label 2, every draw wrong or unanswered → nothing; pass rate 0
    # d: label 2, the right verdict in an ill-formed text only → nothing; pass rate 1/3
    # e: label 1, flipped label (true answer 2): the judge agrees with the wrong label once → kept
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "label": [1, 2, 2, 2, 1],
            "answers": [[1, 2, 1], [2, 2, 2], [1, None, 1], [2, 1, 1], [2, 1, 2]],
            "texts": [
                [OK1, OK2, "<think>x</think><answer>1</answer>"],
                [OK2, OK2, OK2b],
                [OK1, "no answer", OK1],
                [BAD2, OK1, OK1],
                [OK2, OK1, OK2],
            ],
            "correct_score": [2 / 3, 1.0, 0.0, 1 / 3, 1 / 3],
            "answer_entropy": [0.1, 0.2, 0.3, 0.4, 0.5],
            "sentence_entropy": [1.0] * 5,
            "flipped": [False, False, False, False, True],
            "ambiguous": [False, False, True, False, False],
        }
    )


def _rows(kept):
    return list(zip(kept["id"], kept["draw"]))


def test_first_keeps_each_samples_first_correct_well_formed_draw():
    kept = keep_correct(_table(), StrictFormat(), "first")
    assert _rows(kept) == [("a", 0), ("b", 0), ("e", 1)]
    assert kept["target"].tolist() == [OK1, OK2, OK1]


def test_all_keeps_every_distinct_correct_draw_up_to_the_cap():
    assert _rows(keep_correct(_table(), StrictFormat(), "all")) == [("a", 0), ("a", 2), ("b", 0), ("b", 2), ("e", 1)]
    assert _rows(keep_correct(_table(), StrictFormat(), "all", per_sample=1)) == [("a", 0), ("b", 0), ("e", 1)]
    assert _rows(keep_correct(_table(), StrictFormat(), "all", per_sample=2)) == [
        ("a", 0),
        ("a", 2),
        ("b", 0),
        ("b", 2),
        ("e", 1),
    ]


def test_the_format_rule_decides_what_is_well_formed():
    # UnifiedReward-Think's rule passes the repeated </think> of d's first draw (egt's strict one does not)
    assert _rows(keep_correct(_table(), UnifiedRewardThinkFormat(), "first")) == [
        ("a", 0),
        ("b", 0),
        ("d", 0),
        ("e", 1),
    ]


def test_a_null_verdict_read_back_from_parquet_is_wrong(tmp_path):
    _table().to_parquet(tmp_path / "p.parquet")
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert isinstance(table["answers"][2][1], float) and math.isnan(table["answers"][2][1])
    assert _rows(keep_correct(table, StrictFormat(), "all")) == _rows(keep_correct(_table(), StrictFormat(), "all"))


def test_a_table_without_texts_says_what_to_write():
    with pytest.raises(KeyError, match=r"probe.keep_texts=true"):
        keep_correct(_table().drop(columns="texts"), StrictFormat())
    bad = _table()
    bad.at[1, "texts"] = [OK2]
    with pytest.raises(ValueError, match=r"probe row id=b: 3 answers but 1 texts"):
        keep_correct(bad, StrictFormat())
    with pytest.raises(ValueError, match=r"rft.keep='best'"):
        keep_correct(_table(), StrictFormat(), "best")


def test_summary_counts_kept_trajectories_on_noisy_labels():
    kept = keep_correct(_table(), StrictFormat(), "all")
    s = rejection_summary(_table(), kept)
    assert (s["n_pool"], s["draws"], s["right_verdicts"], s["kept"], s["kept_samples"]) == (
        5,
        15,
        7,
        5,
        3,
    )  # right: a 2, b 3, d 1, e 1
    assert (s["flipped_kept"], s["flipped_kept_samples"], s["flipped_in_kept"], s["flipped_rate"]) == (1, 1, 0.2, 0.2)
    assert (s["ambiguous_kept"], s["ambiguous_rate"]) == (0, 0.2)
    assert "flipped_kept" not in rejection_summary(_table().drop(columns=["flipped", "ambiguous"]), kept)


def test_trajectory_set_repeats_a_sample_once_per_trajectory():
    pool = Dataset.from_dict({"id": ["e", "a", "b", "z"], "query": ["qe", "qa", "qb", "qz"]})
    kept = keep_correct(_table(), StrictFormat(), "all")
    rows = trajectory_set(pool, kept)
    assert rows["id"] == ["a", "a", "b", "b", "e"] and rows["query"] == ["qa", "qa", "qb", "qb", "qe"]
    assert rows["target"] == kept["target"].tolist()
    with pytest.raises(ValueError, match=r"2 kept trajectories name samples not in the pool, e.g. \[.b., .b.\]"):
        trajectory_set(pool.select([0, 1, 3]), kept)


def test_incorrect_keeps_the_samples_rft_keeps_nothing_of_when_every_right_verdict_is_well_formed():
    table, scores = _table(), _table()["answer_entropy"].to_numpy()
    chosen = table["id"][IncorrectSelection().rank(table, scores, 0)].tolist()
    assert chosen == ["c"]  # pass rate 0
    assert table["id"][IncorrectSelection(max_pass_rate=1 / 3).rank(table, scores, 0)].tolist() == ["c", "d", "e"]
    kept = set(keep_correct(table, StrictFormat(), "first")["id"])
    # the complement, per sample, except d: a right verdict in an ill-formed text is in neither
    assert set(table["id"]) - kept - set(chosen) == {"d"}
    assert not kept & set(chosen)
    with pytest.raises(ValueError, match=r"max_pass_rate=1.0 must be in \[0, 1\)"):
        IncorrectSelection(max_pass_rate=1.0)
    assert np.array_equal(IncorrectSelection().rank(table.iloc[::-1].reset_index(drop=True), scores[::-1], 0), [2])
