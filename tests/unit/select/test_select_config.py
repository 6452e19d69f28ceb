"""probe / entropy / selection / curriculum config: defaults and messages that say what to write."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401
from egt.config import ConfigError, validate

CONF = Path(__file__).resolve().parents[3] / "conf"


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_defaults_follow_the_paper():
    cfg = _cfg()
    assert (cfg.entropy.name, cfg.selection.name, cfg.selection.band, cfg.curriculum.name) == (
        "answer",
        "entropy",
        "low",
        "ascending",
    )
    assert cfg.selection.fraction == 0.15 and cfg.selection.k is None and cfg.probe.split == "rl_pool"
    assert _cfg("seed=5").selection.seed == 5


@pytest.mark.parametrize(
    "override,msg",
    [
        (["probe.n=4"], "temperature"),
        (["selection.fraction=15"], "fraction"),
        (["selection.percentile=0"], "percentile"),
        (["selection.fraction=null"], "needs a size"),
        (["selection.k=0"], "selection.k"),
        (["curriculum=two_stage", "rl.epochs=2"], "write selection=pass_rate probe.n=8 probe.temperature=1.0"),
        (["curriculum=two_stage", "selection=pass_rate", "probe.n=8", "probe.temperature=1.0"], "write rl.epochs=2"),
        (["data.hints=Hint"], "write curriculum=two_stage or data.hints=null"),
        (["curriculum=two_stage", "curriculum.order.split=0"], r"curriculum.order: .*split=0"),
    ],
)
def test_validation_messages(override, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(_cfg(*override))


def test_band_outside_low_mid_high_fails_at_compose():
    with pytest.raises(Exception) as e:
        _cfg("selection.band=middle")
    assert "expected one of [low, mid, high]" in f"{e.value}\n{e.value.__cause__}"


def test_k_overrides_the_default_fraction():
    validate(_cfg("selection.k=2500"))
    validate(_cfg("selection=all", "selection.fraction=null"))
    validate(_cfg("probe.n=4", "probe.temperature=1.0"))


def test_bis_and_confident_learning_say_which_probe_settings_they_need():
    with pytest.raises(
        ConfigError, match=r"probe.n=2 probe.temperature=1.0.*write selection=bis probe.answer_probs=true"
    ):
        validate(_cfg("selection=bis"))
    with pytest.raises(ConfigError, match=r"^selection=bis reads .*write selection=bis probe.answer_probs=true$"):
        validate(_cfg("selection=bis", "probe.n=4", "probe.temperature=1.0"))
    validate(_cfg("selection=bis", "probe.n=4", "probe.temperature=1.0", "probe.answer_probs=true"))
    pytest.importorskip("cleanlab")
    with pytest.raises(ConfigError, match="write selection=confident_learning probe.answer_probs=true"):
        validate(_cfg("selection=confident_learning"))
    validate(_cfg("selection=confident_learning", "probe.answer_probs=true"))
    validate(
        _cfg("selection=confident_learning", "selection.method.pred_probs=draws", "probe.n=2", "probe.temperature=1")
    )
    with pytest.raises(ConfigError, match="(?s)selection.method: .*filter_by must be one of"):
        validate(_cfg("selection=confident_learning", "probe.answer_probs=true", "selection.method.filter_by=x"))


def test_two_stage_with_pass_rates_and_a_second_stage_validates():
    validate(_cfg("selection=pass_rate", "probe.n=8", "probe.temperature=1.0", "curriculum=two_stage", "rl.epochs=2"))
    validate(
        _cfg(
            "selection=pass_rate",
            "probe.n=8",
            "probe.temperature=1.0",
            "curriculum=two_stage",
            "rl.epochs=2",
            "data.hints='Hint: hard.'",
        )
    )


def test_a_stage_one_share_needs_a_budget_in_updates():
    two_stage = ("selection=pass_rate", "probe.n=8", "probe.temperature=1.0", "curriculum=two_stage", "rl.epochs=2")
    with pytest.raises(ConfigError, match="set rl.max_steps"):
        validate(_cfg(*two_stage, "curriculum.order.stage1_share=0.5"))
    validate(_cfg(*two_stage, "curriculum.order.stage1_share=0.5", "rl.max_steps=4"))
