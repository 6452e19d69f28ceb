"""sft.packing enters the sft stage's key (and rft's, which reuses it) only when on: the keys of runs without
it are byte-for-byte those from before it existed (hashes computed with main's code at 57bf436)."""

from pathlib import Path

from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.artifacts import make_key
from egt.stages import sft as sft_stage

CONF = Path(__file__).resolve().parents[3] / "conf"


def _key(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return make_key("sft", sft_stage.key_settings(cfg.sft))


def test_keys_without_packing_are_those_from_before_it():
    assert _key() == "0a8b4761c710"
    assert _key("sft.batch_size=4", "sft.lr=1e-4") == "840da18a5f4a"
    assert _key("sft.packing_max_tokens=512") == "0a8b4761c710"  # off: the budget changes nothing


def test_packing_and_its_budget_enter_the_key_when_on():
    on, budget = _key("sft.packing=true"), _key("sft.packing=true", "sft.packing_max_tokens=512")
    assert len({on, budget, _key()}) == 3


def test_validation_names_the_attention_key_and_what_to_write():
    import pytest

    from egt.config import ConfigError, validate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        ok = compose("config", overrides=["sft.packing=true", "sft.packing_max_tokens=512"])
        flash = compose(
            "config",
            overrides=["sft.packing=true", "sft.packing_max_tokens=512", "model.attn_implementation=flash_attention_2"],
        )
        rft = compose("config", overrides=["model.attn_implementation=flash_attention_2", "+rft.sft.packing=true"])
        zero = compose("config", overrides=["sft.packing=true", "sft.packing_max_tokens=0"])
    validate(ok)
    with pytest.raises(
        ConfigError, match=r"model\.attn_implementation=flash_attention_2.*sft\.packing_max_tokens=null"
    ):
        validate(flash)
    validate(rft)  # one row (packing_max_tokens null): flash's varlen path can take it
    with pytest.raises(ConfigError, match=r"sft\.packing_max_tokens=0 must be >= 1"):
        validate(zero)


def test_validation_resolves_auto_as_the_run_will(monkeypatch):
    """model.attn_implementation=auto is flash_attention_2 on a CUDA machine with flash-attn 2
    (egt.models.resolve.resolve_attn), whose varlen path takes one packed row: a row budget is refused at
    validation, not at the first training step (egt.sft.packing.check_attention); elsewhere auto is sdpa."""
    import pytest

    from egt.config import ConfigError, validate
    from egt.models import attention

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        auto = ["model.attn_implementation=auto", "sft.packing=true"]
        rows = compose("config", overrides=[*auto, "sft.packing_max_tokens=512"])
        one = compose("config", overrides=auto)
    monkeypatch.setattr(attention, "flash_attn_2_version", lambda: "2.8.3")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    with pytest.raises(ConfigError, match=r"sft\.packing_max_tokens=null.*auto resolves to flash_attention_2"):
        validate(rows)
    validate(one)
    monkeypatch.setattr(attention, "flash_attn_2_version", lambda: None)
    validate(rows)  # auto is sdpa without flash-attn 2: rows of a budget are fine
