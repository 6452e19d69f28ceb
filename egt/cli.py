"""What train.py does once Hydra has composed the config."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from egt import distributed
from egt.config import validate
from egt.pipeline import Pipeline, format_summary
from egt.stages import HEADLINES
from egt.sweep import run_job
from egt.utils import secrets
from egt.utils.logging import quiet_third_party

log = logging.getLogger("egt")


def rewrite_model_path_args(argv: list[str]) -> list[str]:
    """Turn ``model=<dir>`` into ``model=local model.path=<dir>``.

    >>> rewrite_model_path_args(["train.py", "model=tiny"])
    ['train.py', 'model=tiny']
    >>> rewrite_model_path_args(["train.py", "model=/ckpt/qwen"])
    ['train.py', 'model=local', 'model.path=/ckpt/qwen']
    """
    out = []
    for arg in argv:
        if arg.startswith("model=") and ("/" in arg or os.path.isdir(arg[len("model="):])):
            out += ["model=local", f"model.path={arg[len('model='):]}"]
        else:
            out.append(arg)
    return out


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def rewrite_group_args(argv: list[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """Let a nested config group be chosen with a dot, as its key is written:
    ``rl.loss=ppo_clip`` → ``rl/loss=ppo_clip`` when ``conf/rl/loss/ppo_clip.yaml`` exists
    (comma lists for ``-m`` too). Anything else passes through unchanged.

    >>> rewrite_group_args(["t", "rl.loss=ppo_clip", "rl.lr=1e-6", "reward.judge=rule,http"])
    ['t', 'rl/loss=ppo_clip', 'rl.lr=1e-6', 'reward/judge=rule,http']
    """
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        group = conf_dir / key.replace(".", "/")
        if eq and "." in key and key[0].isalpha() and value and group.is_dir() and all(
                (group / f"{v.strip()}.yaml").is_file() for v in value.split(",")):
            arg = f"{key.replace('.', '/')}={value}"
        out.append(arg)
    return out


def headline_metric(results: dict) -> float | None:
    """The number a sweeper optimises: the ``headline`` summary value of the last stage of the run that
    defines one (egt.stages.HEADLINES: sft, rl, eval). None when that stage ran without it (e.g.
    ``rl.eval_n=0`` with no eval stage after it): an earlier stage's number is never passed off as it."""
    for stage in reversed(list(results)):
        if stage in HEADLINES:
            value = (results[stage].get("summary") or {}).get("headline")
            return None if value is None else float(value)
    return None


def main_impl(cfg: DictConfig) -> float | None:
    # under train.py the Hydra callback (egt.utils.secrets.RedactSecrets) did this before Hydra logged anything
    secrets.register_config(cfg)
    secrets.install_log_redaction()
    quiet_third_party()

    def run() -> dict:
        validate(cfg)
        distributed.init(cfg)  # a no-op for one process; every rank of a torchrun / srun launch gets here
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        Path(cfg.paths.artifacts).mkdir(parents=True, exist_ok=True)
        log.info("artifacts: %s", Path(cfg.paths.artifacts).resolve())
        results = Pipeline(cfg).run()
        log.info(format_summary(results))
        return results

    return run_job(cfg, run, headline_metric)  # + job.json in the Hydra output dir
