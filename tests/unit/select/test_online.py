"""The online curriculum on hand-made tables: order and selection follow the new entropies, the cap on
changes, the sampler asks once per epoch and resumes, OnlineOrder re-probes once per re-probe epoch
(a fake prober stands in for the policy) and reads its files back after a restart."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401
from egt.config import ConfigError, validate
from egt.select.curriculum import Ascending, Descending
from egt.select.methods import EntropySelection
from egt.select.online import OnlineCurriculumSampler, Reprobe, drift, next_selection, reprobe_epochs
from egt.select.scores import AnswerEntropy
from egt.select import reprobe as reprobe_mod

CONF = Path(__file__).resolve().parents[3] / "conf"


def table(entropies, flipped=None):
    t = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(len(entropies))],
            "answer_entropy": entropies,
            "sentence_entropy": [0.0] * len(entropies),
        }
    )
    if flipped is not None:
        t["flipped"], t["ambiguous"] = flipped, [False] * len(entropies)
    return t


def test_resort_keeps_the_set_and_follows_the_new_entropies():
    new = table([0.9, 0.1, 0.5, np.inf, 0.3, 0.2])
    assert next_selection(new, ["s0", "s2", "s3", "s4"], AnswerEntropy(), Ascending(), Reprobe(1)) == [
        "s4",
        "s2",
        "s0",
        "s3",
    ]  # 0.3 < 0.5 < 0.9 < inf (no answer last)
    assert next_selection(new, ["s0", "s2", "s3", "s4"], AnswerEntropy(), Descending(), Reprobe(1)) == [
        "s3",
        "s0",
        "s2",
        "s4",
    ]


def test_online_selection_takes_the_lowest_k_with_a_cap():
    new = table([0.9, 0.1, 0.5, np.inf, 0.3, 0.2])  # lowest 3: s1 0.1, s5 0.2, s4 0.3
    prev = ["s0", "s2", "s4"]
    full = next_selection(new, prev, AnswerEntropy(), Ascending(), Reprobe(1, True), EntropySelection())
    assert full == ["s1", "s5", "s4"]
    # cap 1: the best newcomer (s1) enters, the worst leaver (s0, 0.9) leaves
    assert next_selection(new, prev, AnswerEntropy(), Ascending(), Reprobe(1, True, 1), EntropySelection()) == [
        "s1",
        "s4",
        "s2",
    ]
    assert next_selection(new, prev, AnswerEntropy(), Ascending(), Reprobe(1, True, 0), EntropySelection()) == [
        "s4",
        "s2",
        "s0",
    ]
    with pytest.raises(KeyError, match="lacks 1 kept ids"):
        next_selection(new.iloc[:5], ["s5"], AnswerEntropy(), Ascending(), Reprobe(1))


def test_drift_counts_moves_overlap_and_flipped_kept():
    new = table([0.1, 0.2, 0.3, 0.4], flipped=[True, False, False, True])
    before = {"s0": 0.4, "s1": 0.3, "s2": 0.2, "s3": 0.1}
    d = drift(new, AnswerEntropy(), before, before, ["s2", "s3"], ["s0", "s1"])
    assert d["spearman_previous"] == d["spearman_first"] == -1.0
    assert d["moved"] == 4 and d["mean_rank_shift"] == 2.0  # ranks 4,3,2,1 -> 1,2,3,4
    assert (d["overlap_previous"], d["entered"], d["left"]) == (0.0, 2, 2)
    assert (d["flipped_kept"], d["flipped_dropped"]) == (1, 1)
    assert d["score_mean"] == 0.25 and d["n_probed"] == 4 and d["no_answer"] == 0


def test_sampler_asks_once_per_epoch_and_resumes_mid_epoch():
    asked = []

    def order_for(epoch):
        asked.append(epoch)
        return [[0, 1, 2, 3], [3, 1, 2, 0]][min(epoch, 1)]

    s = OnlineCurriculumSampler(4, order_for)
    assert list(s) == [0, 1, 2, 3]
    s.set_epoch(1)
    assert list(s) == [3, 1, 2, 0] and list(s) == [3, 1, 2, 0] and asked == [0, 1]
    s.advance(2)
    state = s.state_dict()
    again = OnlineCurriculumSampler(4, order_for)
    again.load_state_dict(state)
    assert list(again) == [2, 0]
    with pytest.raises(RuntimeError, match="gave 3 rows, expected 4"):
        list(OnlineCurriculumSampler(4, lambda e: [0, 1, 2]))


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_config_checks():
    validate(_cfg("curriculum=ascending_online", "selection.online=true", "selection.max_change=2"))
    with pytest.raises(ConfigError, match="set curriculum.reprobe_every>=1"):
        validate(_cfg("selection.online=true"))
    with pytest.raises(ConfigError, match="needs an ordered curriculum"):
        validate(_cfg("curriculum=shuffle", "curriculum.reprobe_every=1"))
    with pytest.raises(ConfigError, match="needs a sized selection"):
        validate(_cfg("curriculum=ascending_online", "selection=all", "selection.online=true"))
    assert reprobe_epochs(Reprobe(2), 5) == [2, 4]


def test_online_keys_leave_the_select_key_alone():
    from egt.stages.select import key_config

    assert key_config(_cfg()) == key_config(_cfg("curriculum.reprobe_every=3", "selection.online=true"))


def test_online_order_reprobes_once_and_reads_back(tmp_path, monkeypatch):
    """Epochs 1 and 2 re-probe (every=1) with a fake prober whose entropies reverse each time; a second
    OnlineOrder on the same directory (a restarted run) reads the orders back without probing."""
    cfg = _cfg("curriculum=ascending_online", "selection.online=true", "selection.max_change=1")
    ds = Dataset.from_dict({"id": [f"s{i}" for i in range(5)]})
    probes = []

    def fake_probe(cfg, model, processor, ds, out, desc=""):
        probes.append(Path(out).name)
        e = [0.1, 0.2, 0.3, 0.4, 0.5] if len(probes) % 2 else [0.5, 0.4, 0.3, 0.2, 0.1]
        return table(e, flipped=[True, False, False, False, True])

    monkeypatch.setattr("egt.probe.probe.probe_with", fake_probe)
    first = ["s4", "s3"]  # epoch 0: the select stage's (by the SFT probe, s4 lowest)

    def make():
        o = reprobe_mod.OnlineOrder(
            cfg,
            tmp_path,
            ds,
            None,
            Reprobe(1, True, 1),
            first,
            {"s3": 0.2, "s4": 0.1},
            AnswerEntropy(),
            Ascending(),
            EntropySelection(),
        )
        o.model = object()
        return o

    order = make()
    assert order(0) == [4, 3]
    # epoch 1: lowest two are s0, s1; cap 1 -> s0 enters, the worst of {s3, s4} (s4, 0.5) leaves
    assert order(1) == [0, 3] and probes == ["epoch_1"]
    # epoch 2: reversed: lowest two are s4, s3; s4 enters, s0 (0.5) leaves
    assert order(2) == [4, 3] and probes == ["epoch_1", "epoch_2"]
    record = json.loads((tmp_path / "reprobe" / "epoch_1.json").read_text())
    assert record["ids"] == ["s0", "s3"] and record["stats"]["entered"] == 1 and record["stats"]["flipped_kept"] == 1
    assert (tmp_path / "reprobe" / "epoch_1.parquet").is_file()
    restarted = make()
    assert restarted(2) == [4, 3] and restarted(1) == [0, 3] and probes == ["epoch_1", "epoch_2"]
    assert [r["epoch"] for r in restarted.summary()] == [1, 2]
    (tmp_path / "reprobe" / "epoch_1.json").unlink()
    (tmp_path / "reprobe" / "epoch_2.json").unlink()
    with pytest.raises(RuntimeError, match="the re-probe of epoch 1 is missing"):
        make()(2)
