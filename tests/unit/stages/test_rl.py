"""What the rl stage's artifact key covers: without refill it is what it was before refill existed (the
filter node as its YAML gave it), refill and max_tries are in it only with refill on."""

from pathlib import Path

from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.artifacts import make_key
from egt.config import to_container
from egt.data.prompt import template_key
from egt.models.resolve import pixel_budget
from egt.stages.rl import NOT_IN_KEY, key_config, rl_seed
from egt.utils.secrets import config_container

CONF = Path(__file__).resolve().parents[3] / "conf"
UP = {"data": "d" * 12, "sft": "s" * 12, "select": "e" * 12}


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


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
