"""The paper's experiments: each table combines with a scale preset, sets a multirun over its
axis × seeds, and stays within the synthetic rl_pool (every job's config validates)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from omegaconf import OmegaConf

import egt.config  # noqa: F401  (registers the schema)
from egt.config import validate

CONF = Path(__file__).resolve().parents[1] / "conf"
AXES = {
    "table2": ("ablation", "full_rl,selection,selection_sort"),
    "table3": ("selection", "random,accuracy,entropy"),
    "table4": ("entropy", "sentence,answer,mix"),
    "table5": ("selection.band", "low,mid,high"),
    "fig4": ("selection.fraction", "0.05,0.15,0.3,0.5,1.0"),
    "online_curriculum": ("online", "static,order,selection"),
}


def _compose(overrides, hydra=True):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


@pytest.mark.parametrize("preset", ["small", "quick"])
@pytest.mark.parametrize("name", sorted(AXES))
def test_table_with_a_preset_is_a_seed_sweep_over_its_axis(preset, name):
    cfg = _compose([f"experiment=[{preset},{name}]"])
    key, values = AXES[name]
    assert cfg.hydra.mode == RunMode.MULTIRUN
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params == {key: values, "rl.seed": "0,1,2"}
    assert cfg.model.name == ("demo" if preset == "small" else "tiny")
    # every job of the sweep composes, validates and selects a non-empty part of rl_pool
    for value in values.split(","):
        job = _compose([f"experiment=[{preset},{name}]", f"{key}={value}", "rl.seed=2"], hydra=False)
        OmegaConf.resolve(job)
        validate(job)
        n = job.data.world.n_rl
        assert job.selection.k is None or 1 <= job.selection.k <= n
        size = job.selection.k or round((job.selection.fraction or 1.0) * n)
        assert size >= 1
        assert job.rl.seed == 2 and job.curriculum.seed == 2  # the seed reaches RL and the order
        if job.selection.name == "random":
            assert job.selection.seed == 2


@pytest.mark.parametrize(
    "row,selection,curriculum",
    [("full_rl", "all", "shuffle"), ("selection", "entropy", "shuffle"), ("selection_sort", "entropy", "ascending")],
)
def test_table2_rows(row, selection, curriculum):
    cfg = _compose(["experiment=table2", f"ablation={row}"])
    assert (cfg.selection.name, cfg.curriculum.name) == (selection, curriculum)


@pytest.mark.parametrize(
    "row,curriculum,online",
    [("static", "ascending", False), ("order", "ascending_online", False), ("selection", "ascending_online", True)],
)
def test_online_curriculum_rows_share_the_budget(row, curriculum, online):
    cfg = _compose(["experiment=[small,online_curriculum]", f"online={row}"], hydra=False)
    assert (cfg.selection.name, cfg.curriculum.name, cfg.selection.online) == ("entropy", curriculum, online)
    assert cfg.rl.epochs == 4 and cfg.curriculum.reprobe_every == (1 if online or row == "order" else 0)


def test_seeds_is_one_quoted_value_and_the_sft_key_does_not_see_it():
    cfg = _compose(["experiment=[small,table3]", 'seeds="0,1,2,3"'])
    assert OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)["rl.seed"] == "0,1,2,3"
    assert cfg.seed == 0  # the top-level seed (data split, SFT, probe) stays fixed across the sweep
