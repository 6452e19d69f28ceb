"""Refill (egt.rl.refill) on hand-made rollout batches: which groups are held, when the update is due, the
batch it gets (exactly rl.batch_size groups, the surplus cut, completions padded), max_tries, the epoch's
end, an update with no group kept; and the config errors of rl/filter=zero_variance with refill."""

from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.config import validate
from egt.errors import ConfigError
from egt.rl.batch import RolloutBatch
from egt.rl.filters import NormalisedAdvantageFilter
from egt.rl.generated import Generated
from egt.rl.refill import RefillBuffer, refill_buffer
from egt.rl.reward import RewardTerms
from egt.rl.rollout import Rollout
from egt.rl.zero_variance import ZeroVarianceFilter

CONF = Path(__file__).resolve().parents[3] / "conf"
PAD = 0
G = 2


def _rollout(ids: list[str], length: int) -> tuple[Rollout, RewardTerms, Generated]:
    """A rollout batch of ``ids`` (G = 2 rows each), completions of ``length`` tokens whose ids name their
    row (100·prompt + 10·completion + position + 1, never the pad), with its terms and its log record."""
    rows = [(p, j) for p in range(len(ids)) for j in range(G)]
    tokens = torch.tensor([[100 * p + 10 * j + t + 1 for t in range(length)] for p, j in rows])  # [B, L]
    ro = Rollout(
        [{"id": i, "label": 1} for i in ids],
        G,
        [{"input_ids": torch.tensor([p])} for p, _ in rows],
        tokens,
        torch.ones_like(tokens),
        [f"{ids[p]}/{j}" for p, j in rows],
    )
    n = len(rows)
    terms = RewardTerms([float(j) for _, j in rows], [1.0] * n, [0.0] * n, [1.0] * n, Counter(support=n))
    gen = Generated(
        [*ids], [], terms.reward, terms.acc, terms.logic, terms.format, [0.0] * n, torch.full((n,), length),
        torch.zeros(n, dtype=torch.bool), Counter(terms.verdicts),
    )  # fmt: skip
    return ro, terms, gen


def _add(buf: RefillBuffer, ids: list[str], kept: list[bool], length: int = 3) -> None:
    ro, terms, gen = _rollout(ids, length)
    buf.add(ro, terms, torch.tensor(kept), gen)


def test_zero_variance_keeps_groups_whose_accuracy_varies():
    """Groups (consecutive pairs): acc [1, 1] and [0, 0] go whatever their composite rewards, [1, 0] stays."""
    b = RolloutBatch.of_rewards(
        torch.tensor([2.0, 1.5, 0.0, 0.5, 2.0, 0.0]), G, acc=torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    )
    f = ZeroVarianceFilter(refill=True, max_tries=3)
    assert f.groups(b).tolist() == [False, False, True] and (f.refill, f.max_tries) == (True, 3)
    assert f(b, torch.zeros(6)).keep.tolist() == [False, False, False, False, True, True]


def test_a_full_buffer_updates_on_exactly_batch_size_groups_the_surplus_cut():
    buf = RefillBuffer(batch_size=2, max_tries=5, pad_id=PAD)
    _add(buf, ["a", "b"], [False, True], length=3)  # b kept: 1 of 2
    assert not buf.due(end_of_epoch=False) and buf.kept == 1 and not buf.empty
    _add(buf, ["c", "d"], [True, True], length=5)  # c, d kept: 3 ≥ 2
    assert buf.due(end_of_epoch=False)
    up = buf.take()
    assert buf.empty and buf.kept == 0 and buf.dropped == 0
    assert up.stats == {
        "rl/groups_dropped": 1.0,  # a
        "rl/groups_surplus": 1.0,  # d: kept, past the batch (cut, as verl's batch[:train_batch_size])
        "rl/groups_trained": 2.0,
        "rl/refills": 1.0,
        "rl/rollouts_per_update": 2.0,
    }
    ro = up.rollout
    assert [s["id"] for s in ro.samples] == ["b", "c"] and ro.texts == ["b/0", "b/1", "c/0", "c/1"]
    assert up.generated.ids == ["a", "b", "c", "d"] and up.generated.trained_ids == ["b", "c"]
    assert up.generated.rollouts == 2 and up.generated.verdicts == Counter(support=8)  # every row generated
    # b was prompt 1 of a 3-token rollout: padded to 5 with the pad id, masked; c is prompt 0 of the second
    assert ro.completion_ids.tolist() == [
        [101, 102, 103, PAD, PAD],
        [111, 112, 113, PAD, PAD],
        [1, 2, 3, 4, 5],
        [11, 12, 13, 14, 15],
    ]
    assert ro.completion_mask.tolist() == [[1, 1, 1, 0, 0]] * 2 + [[1] * 5] * 2
    assert [f["input_ids"].item() for f in ro.prompt_feats] == [1, 1, 0, 0] and ro.group_size == G
    assert up.terms.reward == [0.0, 1.0, 0.0, 1.0] and up.terms.acc == [1.0] * 4


def test_max_tries_updates_on_what_it_has_and_no_kept_group_is_no_update():
    buf = RefillBuffer(batch_size=2, max_tries=2, pad_id=PAD)
    _add(buf, ["a", "b"], [False, False])
    assert not buf.due(end_of_epoch=False) and not buf.empty  # nothing kept, one try spent
    _add(buf, ["c", "d"], [True, False])
    assert buf.due(end_of_epoch=False)  # the second try: max_tries
    up = buf.take()
    assert [s["id"] for s in up.rollout.samples] == ["c"] and up.stats["rl/groups_dropped"] == 3.0
    _add(buf, ["e", "f"], [False, False])
    _add(buf, ["g", "h"], [False, False])
    up = buf.take()
    assert up.rollout is None and up.terms is None and up.generated.trained_ids == []
    assert up.stats["rl/groups_dropped"] == 4.0 and up.stats["rl/groups_trained"] == 0.0
    assert up.stats["rl/refills"] == 1.0 and up.generated.ids == ["e", "f", "g", "h"]


def test_the_epochs_last_rollout_batch_ends_the_refill():
    buf = RefillBuffer(batch_size=4, max_tries=10, pad_id=PAD)
    assert not buf.due(end_of_epoch=True)  # nothing drawn: nothing to update on
    _add(buf, ["a", "b"], [True, False])
    assert not buf.due(end_of_epoch=False) and buf.due(end_of_epoch=True)
    up = buf.take()
    assert [s["id"] for s in up.rollout.samples] == ["a"] and up.stats["rl/groups_trained"] == 1.0
    with pytest.raises(RuntimeError, match="holds no rollout batch"):
        buf.take()


def test_a_rollout_batch_needs_one_decision_per_group():
    ro, terms, gen = _rollout(["a", "b"], 3)
    with pytest.raises(ValueError, match="3 group decisions for a rollout batch of 2 prompts"):
        RefillBuffer(2, 2, PAD).add(ro, terms, torch.tensor([True, True, False]), gen)


def test_only_a_group_filter_with_refill_gets_a_buffer():
    assert refill_buffer(NormalisedAdvantageFilter(), 4, 8, PAD) is None
    assert refill_buffer(ZeroVarianceFilter(), 4, 8, PAD) is None
    buf = refill_buffer(ZeroVarianceFilter(refill=True, max_tries=3), 4, 8, PAD)
    assert (buf.batch_size, buf.max_tries) == (8, 3)
    with pytest.raises(ConfigError, match="rl.group_size=1 makes groups of one completion"):
        refill_buffer(ZeroVarianceFilter(), 1, 8, PAD)


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["rl/filter=zero_variance", *overrides])


@pytest.mark.parametrize(
    "overrides,msg",
    [
        (["rl.filter.refill=true", "rl.filter.max_tries=0"], r"rl.filter.max_tries=0: write a whole number >= 1"),
        (["rl.filter.refill=yes"], r"rl.filter.refill='yes': write rl.filter.refill=true or rl.filter.refill=false"),
        (["rl.group_size=1"], r"rl.group_size=1 makes groups of one completion, all dropped: write rl.group_size=4"),
    ],
)
def test_bad_refill_settings_fail_at_validation_saying_what_to_write(overrides, msg):
    validate(_cfg())  # the option as shipped is valid
    with pytest.raises(ConfigError, match=msg):
        validate(_cfg(*overrides))


def test_refill_on_several_processes_is_refused_before_any_stage(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"rl.filter.refill=true runs on one process only for now \(2 started\)"):
        validate(_cfg("rl.filter.refill=true", "stages=[rl]"))
