"""egt.stages.distill: when the pipeline skips distillation, and an empty SFT pool is a clear error
before any artifact is opened."""

import pytest
from omegaconf import OmegaConf

from egt.errors import ConfigError
from egt.pipeline import Pipeline, format_summary
from egt.stages import distill, model


def _cfg(tmp_path, stages, sft_model_path=None, trajectories_path=None, eval_models=("sft", "rl")):
    return OmegaConf.create(
        {
            "paths": {"artifacts": str(tmp_path / "art")},
            "stages": list(stages),
            "sft": {"model_path": sft_model_path},
            "data": {"name": "r1_reward_rl"},
            "distill": {"trajectories_path": trajectories_path},
            "eval": {"models": list(eval_models), "model_path": None},
        }
    )


def test_distillation_is_unused_only_when_the_runs_sft_is_an_outside_model(tmp_path):
    every = ["model", "data", "distill", "sft", "probe", "select", "rl", "eval"]
    assert distill.unused(_cfg(tmp_path, every, "/ckpt/sft")).startswith("sft.model_path is set")
    assert distill.unused(_cfg(tmp_path, every)) is None  # SFT trains: it reads the trajectories
    assert distill.unused(_cfg(tmp_path, ["data", "distill"], "/ckpt/sft")) is None  # asked for alone: it runs
    assert distill.unused(_cfg(tmp_path, every, "/ckpt/sft", trajectories_path="/t")) is None  # a cheap reuse
    assert model.unused(_cfg(tmp_path, every, "/ckpt/sft")).startswith("sft.model_path is set")
    assert model.unused(_cfg(tmp_path, every, "/ckpt/sft", eval_models=("model", "sft"))) is None  # evaluated
    assert model.unused(_cfg(tmp_path, every)) is None


def test_the_pipeline_records_a_skipped_stage_and_runs_nothing_for_it(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    pipe = Pipeline(_cfg(tmp_path, ["distill", "sft"], str(tmp_path / "ckpt")))
    results = pipe.run()
    assert results["distill"]["skipped"].startswith("sft.model_path is set") and results["distill"]["key"] is None
    assert results["sft"]["summary"] == {"source": "sft.model_path"}
    assert not (tmp_path / "art" / "distill").exists() and not (tmp_path / "art" / "data").exists()
    table = format_summary(results)
    assert "distill  skipped" in table and "sft      reused" in table and "outside model (sft.model_path)" in table


class _Pipe:
    store = None  # opening an artifact would fail: the check must come first

    def get(self, stage):
        return {"key": "k", "splits": {"sft_pool": {"n": 0}}}


def test_an_empty_sft_pool_is_a_config_error_before_any_artifact(tmp_path):
    cfg = _cfg(tmp_path, ["distill"])
    with pytest.raises(
        ConfigError,
        match=r"sft_pool is empty \(data=r1_reward_rl: R1-Reward-RL is an RL pool only\)"
        r".*sft.model_path",
    ):
        distill.run(cfg, _Pipe())
