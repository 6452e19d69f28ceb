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
KEY_BEFORE = (
    "6e00d7fe4e14"  # the default rft key, computed with main's code at 57bf436 (before sft.packing, model.liger)
)


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


def test_key_gains_liger_only_when_on():
    """rft trains with egt.stages.sft.train, which runs Liger's kernels and fused loss under model.liger=true
    (other numbers): the rft key says so, as sft's and RL's do; off, the key is the one from before."""
    base = rft_stage.key_config(_cfg(*RFT))
    assert "liger" not in base and rft_stage.key_config(_cfg(*RFT, "model.liger=false")) == base
    assert rft_stage.key_config(_cfg(*RFT, "model.liger=true")) == {**base, "liger": True}


def test_key_of_a_default_run_is_unchanged():
    assert make_key("rft", rft_stage.key_config(_cfg(*RFT))) == KEY_BEFORE


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


class _Pipe:
    """The results a select stage would ask the pipeline for (no stage runs)."""

    def __init__(self):
        self.asked = []

    def get(self, stage):
        self.asked.append(stage)
        return {"probe": {"key": "sft-probe"}, "rft": {"key": "r1", "model_path": "/art/rft/r1/model"}}[stage]


def test_rft_reprobe_selects_from_a_probe_of_the_rft_judge(monkeypatch):
    from egt.stages import probe as probe_stage
    from egt.stages.select import probe_to_select_from

    calls = []
    monkeypatch.setattr(probe_stage, "probe_model", lambda cfg, pipe, path, ident: calls.append((path, ident)) or {})
    pipe = _Pipe()
    probe_to_select_from(_cfg(*RFT, "rft.reprobe=true"), pipe)
    assert calls == [("/art/rft/r1/model", "rft:r1")] and pipe.asked == ["rft"]  # the SFT judge's probe unread
    off = _Pipe()
    assert probe_to_select_from(_cfg(*RFT), off) == {"key": "sft-probe"} and off.asked == ["probe"]
    assert "reprobe" not in select_key(_cfg(*RFT, "rft.reprobe=true"))  # it moves the upstream probe key only


def test_rft_reprobe_needs_the_rft_stage():
    with pytest.raises(ConfigError, match="rft.reprobe=true .* add rft"):
        validate(_cfg("rft.reprobe=true"))
    validate(_cfg(*RFT, "rft.reprobe=true", "probe.n=8", "probe.temperature=1.0"))
