"""The rft stage's contract without training: its key, what it validates, where RL and eval start from, and
that the keys of runs without it are those from before it existed."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.artifacts import make_key
from egt.config import ConfigError, validate
from egt.stages import rft as rft_stage
from egt.stages import rl as rl_stage
from egt.stages.probe import key_config as probe_key
from egt.stages.select import key_config as select_key

CONF = Path(__file__).resolve().parents[3] / "conf"
RFT = ["stages=[data,distill,sft,probe,rft]", "probe.keep_texts=true"]


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_keys_without_rft_are_those_from_before_it():
    """Hashes computed on main before the rft stage and probe.keep_texts existed (commit f7c1ee2)."""
    assert make_key("probe", probe_key(_cfg())) == "a8a8de4a9fbe"
    assert make_key("probe", probe_key(_cfg("probe.n=8", "probe.temperature=1.0"))) == "907fa0a2583d"
    assert make_key("probe", probe_key(_cfg("probe.keep_texts=false"))) == "a8a8de4a9fbe"
    assert make_key("select", select_key(_cfg())) == "55af56ae7757"
    data, sft = {"key": "d"}, {"key": "s", "model_path": "/s"}
    assert rl_stage.upstream_keys(data, sft, "x", sft) == {"data": "d", "sft": "s", "select": "x"}


def test_keep_texts_is_in_the_probe_key_only_when_true():
    assert "keep_texts" not in probe_key(_cfg())
    assert probe_key(_cfg("probe.keep_texts=true"))["keep_texts"] is True


def test_rl_starts_from_rft_only_when_it_is_in_the_stage_list():
    results = {"sft": {"key": "s", "model_path": "/s"}, "rft": {"key": "r", "model_path": "/r"}}

    class Pipe:
        def get(self, stage):
            return results[stage]

    assert rl_stage.start_model(_cfg(), Pipe()) is results["sft"]
    assert rl_stage.start_model(_cfg(*RFT), Pipe()) is results["rft"]
    upstream = rl_stage.upstream_keys({"key": "d"}, results["sft"], "x", results["rft"])
    assert upstream == {"data": "d", "sft": "s", "select": "x", "rft": "r"}


def test_key_covers_the_keep_rule_and_the_sft_settings():
    base = rft_stage.key_config(_cfg(*RFT))
    assert base["keep"] == "first" and base["per_sample"] is None
    assert base["format"] == {"_target_": "egt.rl.rules.StrictFormat"}
    assert base["sft"]["lr"] == _cfg().sft.lr and "eval_n" not in base["sft"]  # sft's NOT_IN_KEY
    for change in (
        "rft.keep=all",
        "rft.keep=all rft.per_sample=2",
        "rft.format._target_=egt.rl.rules.UnifiedRewardThinkFormat",
        "+rft.sft.lr=1e-4",
        "sft.epochs=3",  # the sft settings rft trains with, when rft.sft does not override them
        "seed=1",
    ):
        assert rft_stage.key_config(_cfg(*RFT, *change.split())) != base, change
    assert rft_stage.key_config(_cfg(*RFT, "+rft.sft.eval_n=3")) == base  # reporting only
    assert rft_stage.settings(_cfg(*RFT, "+rft.sft.epochs=5")).epochs == 5
    assert rft_stage.train_config(_cfg(*RFT, "+rft.sft.epochs=5")).sft.lr == _cfg().sft.lr


@pytest.mark.parametrize(
    "overrides,msg",
    [
        (["stages=[data,distill,sft,probe,rft]"], r"write probe.keep_texts=true"),
        ([*RFT, "rft.per_sample=3"], r"rft.per_sample=3 caps rft.keep=all.*write rft.keep=all rft.per_sample=3"),
        ([*RFT, "rft.keep=all", "rft.per_sample=0"], r"rft.per_sample=0 must be >= 1, or null"),
        ([*RFT, "+rft.sft.lrr=1e-4"], r"rft.sft.lrr: 'lrr' is not one of .*Did you mean 'lr'\?"),
        ([*RFT, "+rft.sft.model_path=/x"], r"rft.sft.model_path: 'model_path' is not one of"),
    ],
)
def test_validation_says_what_to_write(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(_cfg(*overrides))


def test_rft_settings_are_not_checked_when_rft_does_not_run():
    validate(_cfg("rft.per_sample=3"))  # nothing reads them


def test_the_experiment_composes_and_validates():
    cfg = _cfg("experiment=[quick,unifiedreward_think]")
    validate(cfg)
    assert list(cfg.stages) == ["model", "data", "distill", "sft", "probe", "rft", "select", "rl", "eval"]
    assert (cfg.rl.group_size, cfg.rl.kl_coef, cfg.rl.lr, cfg.rl.ppo_epochs, cfg.rl.num_mini_batches) == (
        8,
        0.04,
        1e-6,
        1,
        1,
    )
    assert (cfg.reward.alpha, cfg.reward.beta, cfg.selection.name, cfg.selection.method.max_pass_rate) == (
        0.0,
        1.0,
        "incorrect",
        0.0,
    )
    assert cfg.reward.format._target_.endswith("UnifiedRewardThinkFormat") and cfg.probe.keep_texts
    assert _cfg("experiment=[small,unifiedreward_think]").selection.fraction is None  # every failure kept
