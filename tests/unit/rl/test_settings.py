"""RLSettings: the RL module's settings read by name from cfg.rl, so a new setting needs no stage edit."""

from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.config import RLConfig
from egt.rl.module import RLModule, RLSettings

CONF = Path(__file__).resolve().parents[3] / "conf"
DERIVED = {"seed", "warmup_steps", "max_updates"}  # what the rl stage computes (egt.stages.rl.train)


def test_every_setting_is_read_from_cfg_rl_by_name():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["rl.logprob_batch_size=4", "rl.kl_in=reward"])
    s = RLSettings.from_config(cfg.rl, seed=7, warmup_steps=3, max_updates=cfg.rl.max_steps)
    read = [f.name for f in fields(RLSettings) if f.name in cfg.rl and f.name not in DERIVED]
    assert {n: getattr(s, n) for n in read} == {n: cfg.rl[n] for n in read}
    assert s.logprob_batch_size == 4 and s.kl_in == "reward" and (s.seed, s.warmup_steps) == (7, 3)


def test_each_required_setting_is_in_the_schema_or_derived():
    required = {f.name for f in fields(RLSettings) if f.default is MISSING}
    assert required - DERIVED <= {f.name for f in fields(RLConfig)}


def test_the_module_takes_its_settings_one_way():
    with pytest.raises(TypeError, match="exactly one"):
        RLModule(*[None] * 8)
    with pytest.raises(TypeError, match="exactly one"):
        RLModule(*[None] * 8, RLSettings(1, 1, 1, 1, 1.0, 1e-3, 0.0, 0, 1.0, 0.0, "k3", "loss"), group_size=2)
