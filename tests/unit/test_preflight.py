"""egt.preflight: the local paths a config names are checked before any stage starts, and only those
the stages of this run read."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schemas)
from egt.errors import ConfigError
from egt.preflight import check_paths, stages_to_run

CONF = Path(__file__).resolve().parents[2] / "conf"


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["experiment=quick", *overrides])


def test_an_outside_model_or_table_replaces_its_stage():
    assert stages_to_run(_cfg("stages=[sft,probe]")) == ["sft", "model", "data", "distill", "probe"]
    assert stages_to_run(_cfg("stages=[sft,probe]", "sft.model_path=/m")) == ["sft", "probe", "data"]
    assert stages_to_run(_cfg("stages=[probe,select]", "probe.model_path=/m")) == ["probe", "data", "select"]
    assert stages_to_run(_cfg("stages=[select]", "probe.table_path=/t.parquet")) == ["select", "probe"]
    assert stages_to_run(_cfg("stages=[eval]", "eval.model_path=/m")) == ["eval", "data"]


@pytest.mark.parametrize(
    "overrides,setting",
    [
        (["stages=[sft,probe]", "sft.model_path=/nonexistent"], "sft.model_path"),
        (["stages=[probe]", "probe.model_path=/nonexistent"], "probe.model_path"),
        (["stages=[select]", "probe.table_path=/nonexistent"], "probe.table_path"),
        (["stages=[eval]", "eval.model_path=/nonexistent"], "eval.model_path"),
        (["stages=[rl]", "rl.selection_path=/nonexistent"], "rl.selection_path"),
        (["stages=[sft]", "distill.trajectories_path=/nonexistent"], "distill.trajectories_path"),
        (["stages=[sft]", "model=local", "model.path=/nonexistent"], "model.path"),
        (["stages=[data]", "data.image_root=/nonexistent"], "data.image_root"),
        (["stages=[data]", "data=r1_reward_rl", "data.path=/nonexistent"], "data.path"),
        (
            ["stages=[data]", "data=preference_files", "data.sources.rl_pool=[{path: /nonexistent, format: pairs}]"],
            r"data.sources.rl_pool\[0\].path",
        ),
    ],
)
def test_a_missing_path_names_the_setting_and_the_path(overrides, setting):
    with pytest.raises(ConfigError, match=f"{setting}=/nonexistent does not exist"):
        check_paths(_cfg(*overrides))


def test_a_path_of_a_stage_that_does_not_run_is_not_checked():
    check_paths(_cfg("stages=[data]", "sft.model_path=/nonexistent", "eval.model_path=/nonexistent"))
    check_paths(_cfg("stages=[probe]", "probe.model_path=/nonexistent", "probe.table_path=" + __file__))
    check_paths(_cfg("stages=[probe,select]", f"probe.model_path={CONF}", "sft.model_path=/nonexistent"))


def test_the_wrong_kind_and_a_hub_id():
    with pytest.raises(ConfigError, match="sft.model_path=.* is not a directory"):
        check_paths(_cfg("stages=[sft]", f"sft.model_path={__file__}"))
    with pytest.raises(ConfigError, match="probe.table_path=.* is not a file"):
        check_paths(_cfg("stages=[select]", f"probe.table_path={CONF}"))
    check_paths(
        _cfg(
            "stages=[data]",
            "data=preference_files",  # a Hub id is not a local path
            "data.sources.rl_pool=[{path: org/name, format: pairs}]",
        )
    )


def test_a_benchmark_without_its_files(tmp_path):
    with pytest.raises(ConfigError, match="eval.benchmarks: .*vl_rewardbench"):
        check_paths(_cfg("stages=[eval]", "eval.benchmarks=[vl_rewardbench]"))
    with pytest.raises(ConfigError, match=f"eval.data_root: {tmp_path}/vl_rewardbench"):
        check_paths(_cfg("stages=[eval]", "eval.benchmarks=[vl_rewardbench]", f"eval.data_root={tmp_path}"))
    check_paths(_cfg("stages=[eval]"))  # the synthetic bench reads the data stage's
