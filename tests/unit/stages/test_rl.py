"""The rl stage's key and plan: keys without two_stage, data.hints or refill are what they were; a hint is
RL's alone (not in the data, probe or eval keys); the plan counts each epoch's batches; refill and max_tries
are in the key only with refill on (the filter node as its YAML gave it otherwise)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.artifacts import make_key
from egt.config import ConfigError, to_container
from egt.data.prompt import template_key
from egt.models.resolve import pixel_budget
from egt.stages import data as data_stage
from egt.stages import probe as probe_stage
from egt.stages import rl as rl_stage
from egt.stages import select as select_stage
from egt.stages.eval import key_conf
from egt.stages.rl import NOT_IN_KEY, key_config, rl_seed
from egt.utils.secrets import config_container

CONF = Path(__file__).resolve().parents[3] / "conf"
TWO_STAGE = ("selection=pass_rate", "probe.n=8", "probe.temperature=1.0", "curriculum=two_stage", "rl.epochs=2")
HINT = "data.hints='Hint: this comparison is hard.'"
UP = {"data": "d" * 12, "sft": "s" * 12, "select": "e" * 12}


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


def _before_refill(cfg, filter_node):
    """The key's config as the stage built it before refill, with the filter node its YAML had then."""
    conf = {k: v for k, v in to_container(cfg.rl).items() if k not in NOT_IN_KEY}
    conf["filter"] = filter_node
    conf.update(
        reward=config_container(cfg.reward),
        seed=rl_seed(cfg),
        template=template_key(cfg.data.template),
        on_bad_sample=cfg.data.on_bad_sample,
        trainer=to_container(cfg.trainer),
        dtype=cfg.model.dtype,
        freeze_vision=cfg.model.freeze_vision,
        **pixel_budget(cfg),
    )
    return conf


def _key(conf):
    return make_key("rl", conf, upstream=UP, version=1)


def test_keys_without_refill_are_unchanged():
    zero_variance = _cfg("rl/filter=zero_variance")
    assert key_config(zero_variance)["filter"] == {"_target_": "egt.rl.zero_variance.ZeroVarianceFilter"}
    old = {"_target_": "egt.rl.zero_variance.ZeroVarianceFilter"}
    assert _key(key_config(zero_variance)) == _key(_before_refill(zero_variance, old))
    default = _cfg()  # rl/filter=paper
    paper = {"_target_": "egt.rl.filters.NormalisedAdvantageFilter", "z": 3.0}
    assert _key(key_config(default)) == _key(_before_refill(default, paper))
    # max_tries means nothing without refill: not in the key either
    assert _key(key_config(_cfg("rl/filter=zero_variance", "rl.filter.max_tries=3"))) == _key(key_config(zero_variance))


def test_refill_and_its_max_tries_are_in_the_key():
    on = key_config(_cfg("rl/filter=zero_variance", "rl.filter.refill=true"))
    assert on["filter"] == {"_target_": "egt.rl.zero_variance.ZeroVarianceFilter", "refill": True, "max_tries": 10}
    off = key_config(_cfg("rl/filter=zero_variance"))
    fewer = key_config(_cfg("rl/filter=zero_variance", "rl.filter.refill=true", "rl.filter.max_tries=3"))
    assert len({_key(on), _key(off), _key(fewer)}) == 3


def test_gather_for_generation_is_not_in_the_key():
    """rl.gather_for_generation changes how ZeRO-3 generates, not the weights it generates with: the key with
    it off, or on (the default), is the one from before the switch existed."""
    default, off = _cfg(), _cfg("rl.gather_for_generation=false")
    assert default.rl.gather_for_generation is True and "gather_for_generation" in NOT_IN_KEY
    assert "gather_for_generation" not in key_config(default)
    paper = {"_target_": "egt.rl.filters.NormalisedAdvantageFilter", "z": 3.0}
    before = _before_refill(default, paper)
    assert _key(key_config(default)) == _key(key_config(off)) == _key(before)
    zero3 = _cfg("trainer=deepspeed_zero3")
    assert _key(key_config(zero3)) == _key(
        key_config(_cfg("trainer=deepspeed_zero3", "rl.gather_for_generation=false"))
    )


def test_the_shared_prompt_mode_is_not_in_the_key_and_a_wrong_one_is_refused():
    """rl.shared_prompt_pass changes how the log-prob passes run, not their numbers (to fp32 rounding:
    tests/unit/rl/test_shared_prompt*.py), so every mode gives the default's key; a value outside
    true/false/cache/packed is a ConfigError that names the key and the values to write."""
    from egt.config.validation import validate

    default = _key(key_config(_cfg()))
    for mode in ("packed", "cache", "false", "true"):
        cfg = _cfg(f"rl.shared_prompt_pass={mode}")
        validate(cfg)
        assert _key(key_config(cfg)) == default, mode
    assert _cfg("rl.shared_prompt_pass=packed").rl.shared_prompt_pass == "packed"
    with pytest.raises(ConfigError, match=r"rl.shared_prompt_pass='pakced'.*cache, packed"):
        validate(_cfg("rl.shared_prompt_pass=pakced"))


def test_packing_is_not_in_the_key_and_bad_settings_are_refused():
    """rl.packing / rl.packing_max_tokens change the layout of the log-prob passes, not their numbers (to fp32
    rounding: tests/unit/rl/test_packing.py): the key with them on is the default's, and the default's key
    holds neither (so keys from before the option are unchanged). With the KV-cache prompt pass, or a budget
    < 1, validation names the key and what to write."""
    from egt.config.validation import validate

    default = _cfg()
    assert default.rl.packing is False and default.rl.packing_max_tokens is None
    assert "packing" not in key_config(default) and "packing_max_tokens" not in key_config(default)
    for over in (
        ("rl.packing=true", "rl.shared_prompt_pass=packed"),
        ("rl.packing=true", "rl.shared_prompt_pass=packed", "rl.packing_max_tokens=4096"),
        ("rl.packing=true", "rl.shared_prompt_pass=false", "rl.packing_max_tokens=512"),
    ):
        cfg = _cfg(*over)
        validate(cfg)
        assert _key(key_config(cfg)) == _key(key_config(_cfg(*over[1:2]))) == _key(key_config(default)), over
    with pytest.raises(ConfigError, match=r"rl.packing=true .*write rl.shared_prompt_pass=packed"):
        validate(_cfg("rl.packing=true"))  # the default shared_prompt_pass=true is the cache
    with pytest.raises(ConfigError, match=r"rl.packing_max_tokens=0 must be >= 1, or null"):
        validate(_cfg("rl.packing=true", "rl.shared_prompt_pass=false", "rl.packing_max_tokens=0"))


def test_packing_with_an_attention_that_ignores_the_4d_mask_is_refused():
    """rl.packing=true under flash_attention_2 (what model=qwen2_5_vl_7b's attn_implementation=auto loads on a
    GPU with flash-attn) would run every pass unpacked, one INFO line the only sign: validation names the key
    and what to write. sdpa / eager pass; auto and egt_varlen pass where they load sdpa (this CPU machine)."""
    from egt.config.validation import validate

    on = ("rl.packing=true", "rl.shared_prompt_pass=packed")
    with pytest.raises(ConfigError, match=r"model.attn_implementation=flash_attention_2 .*write model.attn_implement"):
        validate(_cfg(*on, "model.attn_implementation=flash_attention_2"))
    for attn in ("sdpa", "eager", "auto", "egt_varlen"):
        validate(_cfg(*on, f"model.attn_implementation={attn}"))
    validate(_cfg("rl.packing=false", "model.attn_implementation=flash_attention_2"))


def test_packing_under_egt_varlen_where_its_kernel_runs_is_accepted(monkeypatch):
    """On a GPU egt_varlen loads as itself and packs by prefix-grouped varlen sequences (no 4D mask): accepted."""
    from egt.config.validation import validate
    from egt.models import attention

    monkeypatch.setattr(attention, "varlen_backend", lambda device=None, dtype=None: ("torch", "faked"))
    for shared in ("packed", "false"):
        validate(_cfg("rl.packing=true", f"rl.shared_prompt_pass={shared}", "model.attn_implementation=egt_varlen"))
