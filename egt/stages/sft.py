"""sft stage (paper §2.2, eq. 2): fine-tune the base VLM on the kept teacher trajectories.

Output: an HF model directory (safetensors + processor) at ``<artifact>/model``,
the loss curve, and — when ``sft.eval_n > 0`` — format-ok rate and accuracy
per category of the saved (and reloaded) model on the bench split.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from egt import distributed
from egt.artifacts import ArtifactStore, content_fingerprint, make_key
from egt.config import to_container
from egt.data.prompt import template_key
from egt.data.encode import ChatEncoder, collate, image_tokens
from egt.data.sampler import ResumableSampler
from egt.models.liger import key_extras as liger_key
from egt.models.resolve import load_for_training, pixel_budget
from egt.sft import cache as encoding_cache
from egt.sft.data import SFTDataset, from_cache, join_trajectories
from egt.sft.module import SFTModule
from egt.sft.packing import pack_collate
from egt.stages import data as data_stage
from egt.stages import distill as distill_stage
from egt.training import recipe
from egt.judge.card import judge_card
from egt.training.trained import bench_eval, save_model
from egt.utils.atomic import write_json_atomic
from egt.utils.fmt import num, pct

log = logging.getLogger(__name__)
REQUIRES = ("model", "data", "distill")  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 1
# Settings that change how SFT is run or reported, not the model it produces.
NOT_IN_KEY = (
    "num_workers",
    "cache_encodings",
    "cache_tensors",
    "log_every_n_steps",
    "checkpoint_every_n_steps",
    "eval_n",
    "eval_max_new_tokens",
    "eval_batch_size",
    "model_path",
)
PACKING_KEYS = ("packing", "packing_max_tokens")  # in the key only with sft.packing=true: keys without it unchanged


def key_settings(sft: Any) -> dict[str, Any]:
    """The ``sft`` settings a trained model's key holds: all but :data:`NOT_IN_KEY`, and the packing settings
    only when packing is on (it changes the numbers by summation order; off, the keys of runs from before
    ``sft.packing`` existed stay byte-for-byte the same)."""
    conf = {k: v for k, v in to_container(sft).items() if k not in NOT_IN_KEY}
    if not conf.get("packing"):
        for k in PACKING_KEYS:
            conf.pop(k, None)
    return conf


class LossHistory(Callback):
    """The per-token loss of every micro-batch (``token_loss``, not Lightning's ``loss``: that one is the
    step-share divided by acc), and the seconds from ``t0`` (the stage's start) to the first one's end."""

    def __init__(self, t0: float) -> None:
        self.losses: list[tuple[int, float]] = []
        self.t0 = t0
        self.first_step: float | None = None
        self.fit_start: float | None = None  # the training loop's start and end (tokens per second)
        self.fit_end: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.fit_start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.fit_end = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        loss = outputs.get("token_loss", outputs["loss"]) if isinstance(outputs, dict) else outputs
        self.losses.append((trainer.global_step, float(loss)))
        if self.first_step is None:
            self.first_step = round(time.perf_counter() - self.t0, 2)


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    if cfg.sft.model_path:
        log.info("[sft] using outside model %s", cfg.sft.model_path)
        key = f"external-{content_fingerprint(cfg.sft.model_path)}"  # by content: downstream keys follow it
        return {
            "key": key,
            "path": cfg.sft.model_path,
            "reused": True,
            "summary": {"source": "sft.model_path"},
            "model_path": cfg.sft.model_path,
        }
    data, distill, model = pipe.get("data"), pipe.get("distill"), pipe.get("model")
    base = Path(model["model_path"])
    conf = key_settings(cfg.sft)
    conf.update(
        seed=cfg.seed,
        template=template_key(cfg.data.template),
        on_bad_sample=cfg.data.on_bad_sample,
        trainer=to_container(cfg.trainer),
        dtype=cfg.model.dtype,
        freeze_vision=cfg.model.freeze_vision,
        **pixel_budget(cfg),
        **liger_key(cfg),
    )  # set only when given: keys of runs without a budget (or with model.liger=false) are unchanged
    upstream = {"data": data["key"], "distill": distill["key"], "model": json.dumps(model["identity"])}
    key = make_key("sft", conf, upstream=upstream, version=VERSION)
    with pipe.store.open("sft", key, ranks="all") as art:  # every rank trains (DDP / DeepSpeed)
        if not art.reused:
            summary = train(cfg, art.path, base, data, joined_trajectories(data, distill), pipe.store)
            art.finish(summary, {"config": conf, "upstream": upstream}, drop=recipe.dropped_when_finished(cfg))
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "model_path": str(art.path / "model"),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary)."""
    s = summary
    if s.get("source") == "sft.model_path":
        return "outside model (sft.model_path)"
    bench = f"bench accuracy {pct(s['bench_accuracy'])}, " if "bench_accuracy" in s else ""
    steps = f"{s.get('steps', '?')} step{'' if s.get('steps') == 1 else 's'}"
    return f"{bench}{steps}, loss {num(s.get('train_loss_first'))} -> {num(s.get('train_loss_last'))}"


def _split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = int(round(val_fraction * n)) if n > 1 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def joined_trajectories(data: dict, distill: dict) -> Any:
    """``sft_pool ⋈ trajectories`` (by id): the SFT set, a sample's row with its trajectory as ``target``."""
    joined = join_trajectories(data_stage.load(data)["sft_pool"], distill_stage.load(distill))
    if len(joined) == 0:
        raise ValueError("no trajectories were kept by the distillation stage: nothing to fine-tune on")
    return joined


def _datasets(
    cfg: DictConfig, store: ArtifactStore, data: dict, joined: Any, encoder: ChatEncoder
) -> tuple[Any, Any, dict]:
    """Training and validation sets of ``joined`` (rows with a ``target``) — from the encoding cache (built on
    first use, keyed by the rows' ids and targets) or encoded at every access — and what the check found:
    ``{"checked", "skipped", "image_tokens_mean", "image_tokens_max"}``."""
    s = cfg.sft
    tr_idx, va_idx = _split(len(joined), s.val_fraction, cfg.seed)
    if not s.cache_encodings:
        train_ds, val_ds = SFTDataset(joined.select(tr_idx), encoder), SFTDataset(joined.select(va_idx), encoder)
        checked = _both(train_ds.check(cfg.data.on_bad_sample), val_ds.check(cfg.data.on_bad_sample))
        return train_ds, val_ds, {**checked, **image_tokens(encoder)}
    conf = {"template": template_key(cfg.data.template), "max_length": s.max_length, **pixel_budget(cfg)}
    cache = encoding_cache.open_or_build(
        store, encoder, joined, conf, {"data": data["key"]}, cfg.data.on_bad_sample, tensors=s.cache_tensors
    )
    train_ds, checked = from_cache(cache, tr_idx, cfg.data.on_bad_sample, joined, encoder)
    val_ds, val_checked = from_cache(cache, va_idx, cfg.data.on_bad_sample, joined, encoder)
    return train_ds, val_ds, {**_both(checked, val_checked), **cache.image_token_stats()}


def _both(train: dict[str, int], val: dict[str, int]) -> dict[str, int]:
    """The two splits' checks summed: the summary's ``skipped`` counts every skipped trajectory."""
    return {k: train[k] + val[k] for k in ("checked", "skipped")}


def train(
    cfg: DictConfig, out: Path, base: Path, data: dict, joined: Any, store: ArtifactStore, stage: str = "sft"
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``joined`` (data set rows with a ``target`` column) with the ``cfg.sft`` settings,
    eq. 2's loss and the encoding cache; resumes from ``<out>/checkpoints/last.ckpt``; rank 0 saves
    ``<out>/model`` and measures it. ``stage`` names the logger, the log lines and the bench metrics: the
    sft stage, and the rft stage (egt.stages.rft), which passes its trajectories and its settings as
    ``cfg.sft``."""
    s = cfg.sft
    t0 = time.perf_counter()
    model, processor = load_for_training(base, cfg)
    encoder = ChatEncoder(processor, template=cfg.data.template, max_length=s.max_length)
    train_ds, val_ds, checked = _datasets(cfg, store, data, joined, encoder)
    pad = encoder.tokenizer.pad_token_id
    budget = s.get("packing_max_tokens")

    def batch_of(b: list) -> dict:  # sft.packing: padding-free rows (egt.sft.packing), else padded to the longest
        return pack_collate(b, pad, budget) if s.get("packing") else collate(b, pad, "right")

    local_batch = distributed.split_batch(s.batch_size)  # sft.batch_size is the global batch per forward
    sampler = ResumableSampler(len(train_ds), seed=cfg.seed, shuffle=True).shard(
        distributed.rank(), distributed.world_size()
    )
    train_dl = DataLoader(
        train_ds,
        batch_size=local_batch,
        sampler=sampler,
        num_workers=s.num_workers,
        collate_fn=batch_of,
    )
    val_dl = (
        DataLoader(val_ds, batch_size=local_batch, num_workers=s.num_workers, collate_fn=batch_of)
        if len(val_ds)
        else None
    )
    per_epoch = math.ceil(len(sampler) / local_batch / s.accumulate_grad_batches)
    total = s.max_steps if s.max_steps > 0 else per_epoch * s.epochs
    module = SFTModule(
        model,
        s.lr,
        s.weight_decay,
        s.warmup_ratio,
        total,
        sampler,
        target_tokens=train_ds.target_tokens,
        loss_reduction=s.loss_reduction,
        accumulate=s.accumulate_grad_batches,
        local_batch=local_batch,
        world_size=distributed.world_size(),
        chunk_size=s.chunk_size,
        liger=bool(cfg.model.get("liger", False)),  # in the key already when on (egt.models.liger.key_extras)
    )
    history = LossHistory(t0)
    ckpt_dir = out / "checkpoints"
    ckpt_cb = ModelCheckpoint(
        dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=s.checkpoint_every_n_steps
    )

    def summarize(trainer: L.Trainer, resumed: bool) -> dict[str, Any]:
        return {
            "rank": trainer.global_rank,
            "n_train": len(train_ds),
            "n_val": len(val_ds),
            "skipped": checked["skipped"],
            "steps": trainer.global_step,
            "resumed": resumed,
            "processes": trainer.world_size,
            "seconds_to_first_step": history.first_step,
            **_throughput(module, history, bool(s.get("packing"))),
            **{k: v for k, v in checked.items() if k.startswith("image_tokens")},
        }

    def finish(trainer: L.Trainer, logger: Any, state: dict | None) -> dict[str, Any]:
        return _finish(cfg, out, module, processor, history, trainer, data, logger, state, stage, base)

    return recipe.fit(
        cfg,
        stage,
        module,
        out,
        train_dl,
        val_dl,
        checkpoint=ckpt_dir / "last.ckpt",
        callbacks=[ckpt_cb, history],
        progress_metric="train/loss",
        summarize=summarize,
        finish=finish,
        max_epochs=s.epochs,
        max_steps=s.max_steps,
        accumulate_grad_batches=s.accumulate_grad_batches,
        log_every_n_steps=s.log_every_n_steps,
        limit_val_batches=1.0 if val_dl is not None else 0,
    )


def _throughput(module: SFTModule, history: LossHistory, packed: bool) -> dict[str, Any]:
    """This process's training tokens (real, and the positions the model ran: padding included), and real
    tokens per second of the training loop (validation included; this attempt only, after a resume)."""
    out: dict[str, Any] = {"train_tokens": module.tokens_seen, "train_padded_tokens": module.slots_seen}
    if packed:
        out["packing"] = True
    if history.fit_start is not None and history.fit_end is not None and history.fit_end > history.fit_start:
        out["tokens_per_second"] = round(module.tokens_seen / (history.fit_end - history.fit_start), 1)
    return out


def _finish(
    cfg: DictConfig,
    out: Path,
    module: SFTModule,
    processor: Any,
    history: LossHistory,
    trainer: L.Trainer,
    data: dict,
    logger: Any,
    state: dict | None = None,
    stage: str = "sft",
    base: Path | None = None,
) -> dict[str, Any]:
    """Save the HF model dir atomically (with its judge card, egt.judge.card), then measure the reloaded model
    on the bench split."""
    save_model(out, module.model, processor, state, judge_card(cfg, stage, base, processor, data))
    write_json_atomic(out / "curve.json", {"train/loss": history.losses})
    summary: dict[str, Any] = {}
    if history.losses:
        k = max(1, len(history.losses) // 10)
        summary["train_loss_first"] = round(sum(v for _, v in history.losses[:k]) / k, 4)
        summary["train_loss_last"] = round(sum(v for _, v in history.losses[-k:]) / k, 4)
    if "val/loss" in trainer.callback_metrics:
        summary["val_loss"] = round(float(trainer.callback_metrics["val/loss"]), 4)
    if cfg.sft.eval_n > 0:
        summary.update(bench_eval(cfg, "sft", out / "model", data, logger, trainer.global_step, name=stage))
    return summary
