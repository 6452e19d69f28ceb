"""The rl stage's key and plan for curriculum=two_stage and data.hints: keys without them are what they
were; a hint is RL's alone (not in the data, probe or eval keys); the plan counts each epoch's batches."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.config import ConfigError
from egt.stages import data as data_stage
from egt.stages import probe as probe_stage
from egt.stages import rl as rl_stage
from egt.stages import select as select_stage
from egt.stages.eval import key_conf

CONF = Path(__file__).resolve().parents[3] / "conf"
TWO_STAGE = ("selection=pass_rate", "probe.n=8", "probe.temperature=1.0", "curriculum=two_stage", "rl.epochs=2")
HINT = "data.hints='Hint: this comparison is hard.'"


class StubBench:
    def describe(self):
        return {"name": "stub", "version": 1, "files": ["a"]}

    def fingerprint(self):
        return "fp"


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_hints_are_in_the_rl_key_only_when_set():
    plain, hinted = _cfg(*TWO_STAGE), _cfg(*TWO_STAGE, HINT)
    assert "hints" not in rl_stage.key_config(_cfg()) and "hints" not in rl_stage.key_config(plain)
    assert rl_stage.key_config(hinted) == {**rl_stage.key_config(plain), "hints": "Hint: this comparison is hard."}
    # a hint changes RL's prompts only: the data, probe, select and eval keys are those without it
    assert data_stage.key_config(hinted) == data_stage.key_config(plain)
    assert probe_stage.key_config(hinted) == probe_stage.key_config(plain)
    assert select_stage.key_config(hinted) == select_stage.key_config(plain)
    assert key_conf(hinted, StubBench()) == key_conf(plain, StubBench()) == key_conf(_cfg(), StubBench())


def test_two_stage_enters_the_select_key_and_leaves_the_default_alone():
    assert select_stage.key_config(_cfg(*TWO_STAGE))["curriculum"]["order"]["_target_"].endswith("TwoStage")
    assert select_stage.key_config(_cfg())["curriculum"] == {
        "name": "ascending",
        "order": {"_target_": "egt.select.curriculum.Ascending"},
        "seed": 0,
    }
    assert rl_stage.key_config(_cfg(*TWO_STAGE)) == rl_stage.key_config(_cfg("rl.epochs=2"))


def test_the_plan_counts_each_epochs_batches_and_refuses_a_run_that_ends_in_stage_one():
    r = _cfg(*TWO_STAGE, "rl.batch_size=4", "rl.group_size=2", "rl.num_mini_batches=2").rl
    stages = {"stage1_epochs": 1, "hard": ["h"]}
    assert rl_stage._plan(r, 12, [2, 3], stages) == (2 + 3) * 1 * 2  # rollouts × ppo_epochs × mini-batches
    r.max_steps = 3
    assert rl_stage._plan(r, 12, [2, 3], stages) == 3 * 2
    r.max_steps = 2
    with pytest.raises(ConfigError, match="rl.max_steps=3 or more"):
        rl_stage._plan(r, 12, [2, 3], stages)


def test_a_selection_file_without_stages_refuses_hints_and_one_with_stages_needs_a_second_stage():
    with pytest.raises(ConfigError, match="data.hints=null"):
        rl_stage._two_stage(_cfg(*TWO_STAGE, HINT), {"ids": ["a"]})
    with pytest.raises(ConfigError, match="rl.epochs=3"):
        rl_stage._two_stage(_cfg(*TWO_STAGE), {"ids": ["a", "b"], "stages": {"stage1_epochs": 2, "hard": ["b"]}})
    assert rl_stage._two_stage(_cfg(), {"ids": ["a"]}) == (None, None)
