"""egt.cli.headline_metric: the number a sweep optimises, defined once per stage (egt.stages.HEADLINES);
anchor_paths: under hydra.job.chdir=true relative paths are the launch directory's."""

from omegaconf import OmegaConf

from egt.cli import anchor_paths, headline_metric
from egt.stages import HEADLINES, STAGES


def test_headline_stages_are_stages():
    assert set(HEADLINES) <= set(STAGES) and set(HEADLINES) == {"sft", "rft", "rl", "eval"}


def test_the_last_stage_that_defines_a_headline_gives_it():
    results = {
        "sft": {"summary": {"headline": 0.8}},
        "probe": {"summary": {}},
        "rl": {"summary": {"headline": 0.85, "reward_last": 1.4}},
    }
    assert headline_metric(results) == 0.85
    results["eval"] = {"summary": {"headline": 0.9}}
    assert headline_metric(results) == 0.9
    results["select"] = {"summary": {"headline": 123.0}}  # a stage without a headline is not read
    assert headline_metric(results) == 0.9


def test_a_stage_without_its_headline_gives_none_not_an_earlier_stages():
    # rl.eval_n=0: the RL run has no bench accuracy; SFT's must not be passed off as RL's
    assert headline_metric({"sft": {"summary": {"headline": 0.8}}, "rl": {"summary": {"reward_last": 1.2}}}) is None
    assert headline_metric({"data": {"summary": {}}}) is None


def test_relative_paths_are_anchored_at_the_launch_directory(tmp_path, monkeypatch):
    launch = tmp_path / "launch"
    (launch / "data").mkdir(parents=True)
    (launch / "data" / "pairs.jsonl").write_text("{}\n")
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")  # what hydra.job.chdir=true does before the task runs
    cfg = OmegaConf.create(
        {
            "paths": {"artifacts": "artifacts", "logs": "/abs/logs"},
            "model": {"path": None},
            "sft": {"model_path": "???"},
            "data": {
                "path": "data/pairs.jsonl",
                "image_root": None,
                "sources": {"sft_pool": [{"path": "org/hub-name", "image_root": "data"}]},
            },
        }
    )
    changed = anchor_paths(cfg, launch)
    assert cfg.paths.artifacts == str(launch.resolve() / "artifacts") and cfg.paths.logs == "/abs/logs"
    assert cfg.data.path == str(launch.resolve() / "data/pairs.jsonl")
    assert cfg.data.sources.sft_pool[0].path == "org/hub-name"  # a Hub id, not a file there: unchanged
    assert cfg.data.sources.sft_pool[0].image_root == str(launch.resolve() / "data")
    assert OmegaConf.is_missing(cfg.sft, "model_path")
    assert changed == ["paths.artifacts", "data.path", "data.sources.sft_pool.0.image_root"]


def test_nothing_changes_without_a_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create({"paths": {"artifacts": "artifacts", "logs": "logs"}})
    assert anchor_paths(cfg, tmp_path) == [] and cfg.paths.artifacts == "artifacts"
