"""Loading a model directory the way the config says (dtype, attention, pixel budget, freezing).

Which directory a run starts from is the ``model`` stage's job (egt.stages.model)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig


log = logging.getLogger(__name__)


def resolve_attn(name: str, dtype: str | None = None) -> str:
    """``auto`` → flash_attention_2 when flash-attn 2 and CUDA are there, else sdpa; ``egt_varlen`` → itself
    when a varlen kernel runs here for ``dtype``, else sdpa (egt.models.attention.resolve). Each logs one line."""
    if name == "egt_varlen":
        from egt.models import attention

        return attention.resolve(dtype=dtype)
    if name != "auto":
        return name
    from egt.models.attention import flash_attn_2_version

    cuda, flash = torch.cuda.is_available(), flash_attn_2_version() is not None
    if cuda and flash:
        log.info("attn_implementation=auto: using flash_attention_2")
        return "flash_attention_2"
    why = "no CUDA device" if not cuda else "the flash-attn package is not installed (pip install egt[gpu])"
    log.info("attn_implementation=auto: %s, using sdpa (PyTorch scaled-dot-product attention)", why)
    return "sdpa"


def load_configured(path: str | Path, cfg: DictConfig):
    """The model alone (no processor, train mode as loaded) from ``path`` with ``model.dtype``,
    ``model.attn_implementation`` (``auto`` resolved) and ``model.trust_remote_code``: the one place a
    stage turns the model config into a ``from_pretrained`` call (egt.models.loader.load_model)."""
    from egt.models.loader import load_model

    return load_model(
        path,
        dtype=cfg.model.dtype,
        attn_implementation=resolve_attn(cfg.model.attn_implementation, str(cfg.model.dtype)),
        trust_remote_code=cfg.model.trust_remote_code,
    )


def pixel_budget(cfg: DictConfig) -> dict[str, int]:
    """``{"min_pixels": …, "max_pixels": …}`` for the ones ``model.*`` sets (empty: the checkpoint's own);
    what the processor gets, and what goes into the artifact keys of the stages that encode images."""
    return {k: int(cfg.model[k]) for k in ("min_pixels", "max_pixels") if cfg.model.get(k) is not None}


def load_for_inference(path: str | Path, cfg: DictConfig) -> tuple[Any, Any]:
    """Model (eval mode) + processor from ``path`` with the config's dtype, attention and pixel budget."""
    from egt.models.loader import load_processor

    return load_configured(path, cfg), load_processor(
        path, trust_remote_code=cfg.model.trust_remote_code, **pixel_budget(cfg)
    )


def load_for_training(path: str | Path, cfg: DictConfig):
    """Model + processor from ``path`` with the config's dtype / attention / pixel budget / freezing choices,
    and Liger's kernels when ``model.liger`` (egt.models.liger)."""
    model, processor = load_for_inference(path, cfg)
    if cfg.model.freeze_vision:
        frozen = 0
        for name, p in model.named_parameters():
            if ".visual." in f".{name}" or name.startswith("visual") or "vision_tower" in name:
                p.requires_grad_(False)
                frozen += p.numel()
        if frozen == 0:
            raise ValueError(f"model.freeze_vision=true but no vision parameters were found in {path}")
        log.info("froze %d vision parameters", frozen)
    if cfg.model.gradient_checkpointing:
        enable_checkpointing(model)
        model.config.use_cache = False
        log.info("gradient checkpointing on")
    if cfg.model.get("liger", False):
        from egt.models import liger

        liger.apply(model)
    model.train()
    return model, processor


def enable_checkpointing(model: Any) -> None:
    """Activation (gradient) checkpointing on ``model``, non-reentrant (works with DDP and frozen inputs), in
    the API the installed transformers has: ``activation_checkpointing_enable`` (5.2x and later) or
    ``gradient_checkpointing_enable`` (before; e.g. 5.20, which the ``vllm`` extra's environment resolves to)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
