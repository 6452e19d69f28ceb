"""Every option of every config group composes against the typed schema and validates."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import egt.config  # noqa: F401  (registers the schema)
from egt.cli import rewrite_model_path_args
from egt.config import ConfigError, validate

CONF = Path(__file__).resolve().parents[1] / "conf"
# groups whose options need something from the user (a local model path)
NEEDS_PATH = {("model", "local"), ("model", "qwen2_5_vl_7b")}
NEEDS_ARGS = {("distill/teacher", "openai"): ["distill.teacher.base_url=http://127.0.0.1:8000/v1",
                                              "distill.teacher.model=m"],
              ("distill/teacher", "hf"): ["distill.teacher.model_path=/models/vlm"],
              ("data", "r1_reward_rl"): ["data.path=/data/R1-Reward-RL"]}


def options():
    for group_dir in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        group = group_dir.relative_to(CONF).as_posix()
        for f in sorted(group_dir.glob("*.yaml")):
            yield group, f.stem


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("group,option", list(options()), ids=lambda x: str(x))
def test_every_option_composes_and_validates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if (group, option) in NEEDS_PATH:
        overrides.append(f"model.path={tmp_path}")
    cfg = _compose(overrides + NEEDS_ARGS.get((group, option), []))
    OmegaConf.resolve(cfg)
    validate(cfg)


def test_default_is_demo_model_on_cpu_with_offline_wandb():
    cfg = _compose([])
    assert cfg.model.name == "demo" and cfg.trainer.accelerator == "cpu"
    assert cfg.logger.offline is True and cfg.model.trust_remote_code is False


def test_misspelt_key_fails_at_compose():
    with pytest.raises(Exception, match="lrr"):
        _compose(["sft.lrr=1e-3"])


def test_wrong_type_fails_at_compose():
    with pytest.raises(Exception, match="batch_size"):
        _compose(["sft.batch_size=many"])


@pytest.mark.parametrize("override,msg", [
    ("stages=[data,distil]", "Did you mean 'distill'"),
    ("model.dtype=bf16", "Did you mean 'bfloat16'"),
    ("data.on_bad_sample=skpi", "Did you mean 'skip'"),
    ("sft.val_fraction=1.5", "val_fraction"),
    ("distill.concurrency=0", "requests in flight"),
    ("distill/teacher=openai", "needs distill.teacher.base_url=…, distill.teacher.model=…"),
    ("trainer.precision=bf16-mixed", "28x slower"),
    ("trainer.devices=2", "one process"),
])
def test_validation_says_what_to_write(override, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(_compose([override]))


def test_model_that_needs_a_path_says_so():
    with pytest.raises(ConfigError, match="model.path"):
        validate(_compose(["model=qwen2_5_vl_7b"]))
    with pytest.raises(ConfigError, match="not a directory"):
        validate(_compose(["model=local", "model.path=/no/such/dir"]))


def test_model_dir_shorthand():
    assert rewrite_model_path_args(["t", "model=/m/qwen", "sft.lr=1"]) == ["t", "model=local", "model.path=/m/qwen", "sft.lr=1"]
    assert rewrite_model_path_args(["t", "model=demo"]) == ["t", "model=demo"]


# experiment=paper names the 7B model: it needs model.path too
NEEDS_PATH.add(("experiment", "paper"))
NEEDS_ARGS[("experiment", "paper")] = ["data.path=/data/R1-Reward-RL"]  # its RL pool is R1-Reward's


@pytest.mark.parametrize("overrides,msg", [
    (["trainer.devices=0"], "number of devices per node"),
    (["trainer=deepspeed_zero2", "trainer.accelerator=cpu"], "CUDA GPUs only"),
    (["trainer=ddp", "trainer.devices=4"], "python -m torch.distributed.run --nproc_per_node=4"),
])
def test_scale_validation_says_what_to_write(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(_compose(overrides))


def test_experiment_paper_holds_the_papers_settings(tmp_path):
    with pytest.raises(ConfigError, match="data=r1_reward_rl needs data.path"):  # never the synthetic world
        validate(_compose(["experiment=paper", f"model.path={tmp_path}"]))
    cfg = _compose(["experiment=paper", f"model.path={tmp_path}", f"data.path={tmp_path}"])
    validate(cfg)
    assert cfg.data.name == "r1_reward_rl" and cfg.data.sources.rl_pool[0].format == "r1_reward_rl"
    assert cfg.model.max_pixels == 1003520 and cfg.data.decontaminate
    assert cfg.model.name == "qwen2_5_vl_7b" and cfg.model.dtype == "bfloat16" and cfg.model.gradient_checkpointing
    assert cfg.trainer.strategy.stage == 3 and cfg.trainer.precision == "bf16-mixed"
    s = cfg.sft
    assert (s.epochs, s.batch_size * s.accumulate_grad_batches, s.lr) == (1, 256, 1e-5)
    r = cfg.rl
    assert (r.name, r.epochs, r.batch_size, r.lr, r.kl_coef) == ("stable_reinforce", 20, 224, 1e-6, 1e-3)
    assert (cfg.selection.k, cfg.curriculum.name, cfg.entropy.name) == (2500, "ascending", "answer")
    for gpus in (8, 4):  # global batches split evenly over the GPUs it expects
        assert s.batch_size % gpus == 0 and r.batch_size % gpus == 0
    assert "hydra" not in OmegaConf.load(CONF / "experiment" / "paper.yaml")  # combinable with table sweeps
