"""Experiment loggers (wandb offline by default, CSV, none) and a rank-zero logger."""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig

from egt.utils.secrets import config_container, redacted_argv

log = logging.getLogger(__name__)


def make_logger(cfg: DictConfig, stage: str) -> Logger | None:
    """Instantiate ``cfg.logger`` for one stage and record the resolved config, redacted
    (:func:`egt.utils.secrets.config_container`: ``***`` and the names of variables, never a secret);
    the command line wandb records with the run is redacted too."""
    if cfg.logger is None:
        return None
    name = f"{cfg.run_name or 'egt'}-{stage}"
    user_mode = os.environ.get("WANDB_MODE")
    try:
        logger = instantiate(cfg.logger, name=name, **wandb_mode_kwargs(cfg.logger, user_mode))
        with redacted_argv():  # wandb starts its run (and reads sys.argv) at the first call
            logger.log_hyperparams(config_container(cfg))
    finally:  # Lightning's offline flag sets WANDB_MODE=dryrun process-wide; later wandb.init must not inherit it
        if user_mode is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = user_mode
    return logger


def wandb_mode_kwargs(logger_cfg: DictConfig, user_mode: str | None) -> dict[str, Any]:
    """Overrides for a ``WandbLogger`` with ``offline: true``: the run's mode goes to its own
    ``wandb.init(mode=…)`` instead of Lightning's process-wide ``WANDB_MODE=dryrun``, and a user's
    ``WANDB_MODE`` (``online`` under a sweep agent) wins over the offline default.

    >>> wandb_mode_kwargs({"_target_": "lightning.pytorch.loggers.WandbLogger", "offline": True}, None)
    {'offline': False, 'mode': 'offline'}
    >>> wandb_mode_kwargs({"_target_": "lightning.pytorch.loggers.WandbLogger", "offline": True}, "online")
    {'offline': False, 'mode': 'online'}
    """
    if not str(logger_cfg.get("_target_", "")).endswith("WandbLogger") or not logger_cfg.get("offline"):
        return {}
    return {"offline": False, "mode": user_mode or "offline"}


def close_logger(logger: Logger | None, status: str) -> None:
    """Finish the run so that one failed sweep job does not leave wandb hanging for the next."""
    if logger is None:
        return
    try:
        logger.finalize(status)
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=0 if status == "success" else 1)
    except Exception as e:  # closing must never mask the real error
        log.warning("could not close logger %s: %s", type(logger).__name__, e)


def log_metrics(logger: Logger | None, metrics: dict[str, Any], step: int | None = None) -> None:
    if logger is not None:
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)


# Third-party lines that say nothing about the run (advertising, restating a default egt sets on purpose);
# matched at the start of the message. Real warnings pass.
KNOWN_NOISE = ("💡 Tip:", "`Trainer(limit_val_batches=", "`weights_only` was not set", "`Trainer.fit` stopped:")


class DropKnownNoise(logging.Filter):
    """Drops log records whose message starts with one of :data:`KNOWN_NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KNOWN_NOISE)


def sampler_restored() -> None:
    """Called where a module restored its :class:`egt.data.sampler.ResumableSampler` from a checkpoint
    (``on_load_checkpoint``): the data order of the resumed epoch continues where the killed run stopped.
    Lightning warns on a mid-epoch resume unless the DataLoader itself has ``state_dict`` /
    ``load_state_dict`` (lightning/pytorch/loops/training_epoch_loop.py, "your dataloader is not
    resumable"), and egt's sampler state rides in the checkpoint through the module's hooks, which that
    check does not see: for this process the warning is wrong, and it is ignored."""
    import warnings

    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings(
        "ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended",
        category=PossibleUserWarning,
    )  # fmt: skip


def quiet_third_party() -> None:
    """Quiet Lightning's tips and restated defaults and a known torch/Lightning deprecation warning
    (``isinstance(treespec, LeafSpec)``) on the console, without hiding real warnings. Idempotent."""
    import warnings

    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.trainer.connectors.checkpoint_connector",
    ):
        target = logging.getLogger(name)
        if not any(isinstance(f, DropKnownNoise) for f in target.filters):
            target.addFilter(DropKnownNoise())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
