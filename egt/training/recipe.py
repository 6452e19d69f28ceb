"""The Lightning sequence every training stage runs, written once (sft, rl; docs/design.md §1.3).

:func:`fit` makes the stage's logger, a ``Trainer`` from ``cfg.trainer`` (checkpoints written whole or not at
all, DeepSpeed's directories too: egt.utils.checkpoint), resumes from ``last.ckpt`` when a killed attempt
left one, fits, gathers the full state dict (a collective under ZeRO-3), checks that every rank holds the
same parameters, lets rank 0 finish (save the model, measure it), and closes the logger in a ``finally`` so
that one failed sweep job does not leave the next one's run open. The stage brings its module, loaders and
callbacks, and two functions: ``summarize`` (every rank, after fit) and ``finish`` (rank 0). A
:class:`FitClock` in every checkpoint carries the fit's seconds across a kill, so a resumed stage reports
what its model cost.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from egt import distributed
from egt.utils.checkpoint import AtomicCheckpointIO, atomic_deepspeed_saves, recover_checkpoint
from egt.utils.logging import close_logger, make_logger
from egt.utils.progress import progress_callback

Summarize = Callable[[L.Trainer, bool], dict[str, Any]]  # (trainer, resumed) -> the stage's summary
Finish = Callable[[L.Trainer, "Logger | None", "dict | None"], dict[str, Any]]  # (trainer, logger, state)
BeforeFit = Callable[[L.Trainer, "Logger | None"], None]


class FitClock(Callback):
    """The fit's wall and CPU seconds over every attempt, saved in each checkpoint: a resumed fit adds the
    seconds its checkpoint carries to its own, so ``train_seconds`` / ``train_cpu_seconds`` are what the
    model cost, not what the last attempt did (the methods comparison's cost column, docs/methods/protocol.md
    §3). Work an attempt did after its last checkpoint is redone on resume and counted once, as it is in
    the model; the time between a kill and the resume is not counted. A checkpoint from before egt kept
    the clock carries none: such a resume counts from the checkpoint on, and ``complete`` (saved with the
    seconds, so a later resume keeps it) and ``fit_seconds_complete`` in the summary say so. CPU seconds
    are ``time.process_time()``: every thread of this process (one rank).
    """

    def __init__(self) -> None:
        self.carried = {"wall": 0.0, "cpu": 0.0}  # seconds of the attempts before this one
        self.complete = True  # every attempt's seconds are counted (fit() sets False before a resume)
        self._start: tuple[float, float] | None = None

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def seconds(self) -> dict[str, float]:
        """{"wall", "cpu"} seconds so far, every attempt that a checkpoint kept included."""
        if self._start is None:
            return dict(self.carried)
        wall0, cpu0 = self._start
        return {
            "wall": self.carried["wall"] + time.perf_counter() - wall0,
            "cpu": self.carried["cpu"] + time.process_time() - cpu0,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**self.seconds(), "complete": self.complete}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning calls this only for a checkpoint that holds the clock's state
        self.carried = {"wall": float(state_dict["wall"]), "cpu": float(state_dict["cpu"])}
        self.complete = bool(state_dict.get("complete", True))


def dropped_when_finished(cfg: DictConfig) -> tuple[str, ...]:
    """What a finished training artifact removes (``Artifact.finish(drop=...)``): its ``checkpoints/``,
    unless ``paths.keep_checkpoints``. Only a killed attempt resumes from them, and a finished artifact is
    reused, never resumed; at 7B under ZeRO-3 they are the fp32 master weights and Adam moments
    (~12 B/parameter, ~100 GB), per job of a sweep."""
    return () if cfg.paths.get("keep_checkpoints", False) else ("checkpoints",)


def make_trainer(
    cfg: DictConfig,
    stage: str,
    out: Path,
    logger: Logger | None,
    callbacks: list[Callback],
    progress_metric: str,
    clip_gradients: bool = True,
    **kwargs: Any,
) -> L.Trainer:
    """``L.Trainer`` of ``cfg.trainer`` (egt.distributed.trainer_kwargs) with egt's fixed choices: the
    stage's sampler (no distributed sampler), a progress log of ``progress_metric``, a progress bar only
    on a terminal. ``clip_gradients=False`` leaves clipping to the module (manual optimisation)."""
    trainer_kw = distributed.trainer_kwargs(cfg)
    if not clip_gradients:
        trainer_kw.pop("gradient_clip_val", None)
    plugins = [] if distributed.is_deepspeed(trainer_kw["strategy"]) else [AtomicCheckpointIO()]
    progress = progress_callback(stage, logging.getLogger(f"egt.stages.{stage}"), progress_metric)
    trainer = L.Trainer(
        **trainer_kw,
        callbacks=[*callbacks, progress],
        enable_progress_bar=sys.stderr.isatty(),
        plugins=plugins,
        logger=logger if logger is not None else False,
        default_root_dir=str(out),
        enable_model_summary=False,
        use_distributed_sampler=False,
        **kwargs,
    )
    if distributed.is_deepspeed(trainer.strategy):  # its checkpoint is a directory every rank writes into
        atomic_deepspeed_saves(trainer.strategy)
    return trainer


def fit(
    cfg: DictConfig,
    stage: str,
    module: L.LightningModule,
    out: Path,
    train: DataLoader,
    val: DataLoader | None = None,
    *,
    checkpoint: Path,
    callbacks: list[Callback],
    progress_metric: str,
    summarize: Summarize,
    finish: Finish,
    before_fit: BeforeFit | None = None,
    clip_gradients: bool = True,
    **trainer_args: Any,
) -> dict[str, Any]:
    """Train ``module`` (whose ``.model`` is the network saved) and return the stage's summary:
    ``summarize(trainer, resumed)``, ``train_seconds`` (the fit's wall seconds), ``train_cpu_seconds`` (this
    process's CPU seconds over the fit, all its threads: the cost that does not grow when other work shares the
    machine) — both over every attempt, :class:`FitClock` — , ``params_in_sync``, then
    rank 0's ``finish(trainer, logger, state)``; a resumed fit adds ``fit_seconds_complete`` (False when its
    checkpoint carried no clock: the seconds then start at that checkpoint).

    ``checkpoint``: the ``last.ckpt`` a killed attempt resumes from; ``before_fit(trainer, logger)``: the
    stage's last checks and wiring once both exist; ``trainer_args``: the stage's ``L.Trainer`` keywords.
    """
    log = logging.getLogger(f"egt.stages.{stage}")
    logger = make_logger(cfg, stage)
    status = "failed"
    try:
        clock = FitClock()
        trainer = make_trainer(
            cfg, stage, out, logger, [*callbacks, clock], progress_metric, clip_gradients, **trainer_args
        )
        if before_fit is not None:
            before_fit(trainer, logger)
        recover_checkpoint(checkpoint)  # what a save killed mid-way left (DeepSpeed's checkpoint directories)
        resumed = distributed.broadcast(checkpoint.exists())  # rank 0's view: every rank resumes, or none
        if resumed:
            log.info("[%s] resuming from %s", stage, checkpoint)
        clock.complete = not resumed  # until the checkpoint's clock says otherwise
        clock.start()
        trainer.fit(module, train, val, ckpt_path=str(checkpoint) if resumed else None)
        seconds = clock.seconds()
        summary = summarize(trainer, resumed)
        # the fit's seconds over every attempt (FitClock): the cost a comparison reports
        summary["train_seconds"] = round(seconds["wall"], 2)
        summary["train_cpu_seconds"] = round(seconds["cpu"], 2)
        if resumed:
            summary["fit_seconds_complete"] = clock.complete
        state = distributed.full_state_dict(trainer, module.model)  # collective under ZeRO-3
        summary["params_in_sync"] = distributed.check_in_sync(
            module.model, stage, sharded=getattr(trainer.strategy, "zero_stage_3", False)
        )
        if trainer.is_global_zero:
            summary.update(finish(trainer, logger, state))
        status = "success"
        return summary
    finally:
        close_logger(logger, status)
