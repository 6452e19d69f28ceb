"""Curriculum orders across epochs and across a save/restore in the middle of an epoch."""

import numpy as np
import pandas as pd
import pytest

from egt.select.curriculum import Ascending, Descending, epoch_ids, make_sampler, DataOrder, Shuffle
from egt.select.methods import AllSelection
from egt.select.scores import AnswerEntropy
from egt.select.selection import select

TABLE = pd.DataFrame(
    {
        "id": [f"s{i}" for i in range(8)],
        "answer_entropy": [0.5, 0.1, 0.7, 0.3, np.inf, 0.3, 0.9, 0.2],
        "correct_score": [1.0] * 8,
    }
)


def sel(curriculum, seed=3):
    return select(TABLE, AnswerEntropy(), AllSelection(), curriculum, curriculum_seed=seed)


def test_ascending_and_descending_every_epoch():
    up, down = sel(Ascending()), sel(Descending())
    assert up["ids"] == ["s1", "s7", "s3", "s5", "s0", "s2", "s6", "s4"]
    assert down["ids"] == ["s4", "s6", "s2", "s0", "s3", "s5", "s7", "s1"]  # ties (s3, s5) by id
    for s in (up, down):
        assert epoch_ids(s, 0) == epoch_ids(s, 1) == epoch_ids(s, 5) == s["ids"]


def test_none_is_data_order():
    assert sel(DataOrder())["ids"] == [f"s{i}" for i in range(8)]


def test_shuffle_new_seeded_permutation_each_epoch():
    s = sel(Shuffle())
    assert s["shuffle_each_epoch"] and sorted(s["ids"]) == sorted(TABLE["id"])
    e = [epoch_ids(s, k) for k in range(3)]
    assert e[0] == s["ids"] and e[1] != e[0] and e[2] != e[1] and sorted(e[1]) == sorted(e[0])
    assert sel(Shuffle())["ids"] == s["ids"] and sel(Shuffle(), seed=4)["ids"] != s["ids"]
    assert epoch_ids(sel(Shuffle()), 2) == e[2]


@pytest.mark.parametrize("curriculum", [Ascending(), Shuffle()])
def test_sampler_resumes_mid_epoch_like_an_uninterrupted_run(curriculum):
    s = sel(curriculum)
    uninterrupted = []
    smp = make_sampler(s, len(s["ids"]))
    for epoch in range(3):
        smp.set_epoch(epoch)
        uninterrupted.append(list(smp))
    run = make_sampler(s)
    run.set_epoch(1)
    it = iter(run)
    seen = [next(it) for _ in range(3)]
    run.advance(3)  # three samples trained on, then the job is killed
    resumed = make_sampler(s)
    resumed.load_state_dict(run.state_dict())
    resumed.set_epoch(1)
    assert seen + list(resumed) == uninterrupted[1]
    resumed.set_epoch(2)
    assert list(resumed) == uninterrupted[2]


def test_make_sampler_checks_the_data_set_length():
    with pytest.raises(ValueError, match="selection"):
        make_sampler(sel(Ascending()), 5)
