"""Which model directory a run uses: a user's local HF directory, or a tiny/demo model
built offline once (through the artifact store) and then loaded like any checkpoint."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from egt.artifacts import make_key
from egt.config import to_container

log = logging.getLogger(__name__)
BUILD_VERSION = 6  # 2: the tokenizer corpus holds the compact teacher style too; 3: untied embeddings;
#                    4: and scene descriptions (distill.teacher.describe); 5: Qwen's default system message;
#                    6: egt's own BPE trainer (ties broken by the pair, the same in every process)
CORPUS_LINES = 4000
BUILD_KINDS = ("world", "qwen2_5_vl_replica")
REPLICA_VERSION = 1  # egt.models.replica's files


def resolve_attn(name: str) -> str:
    """``auto`` → flash_attention_2 when flash-attn and CUDA are there, else sdpa."""
    if name != "auto":
        return name
    cuda, flash = torch.cuda.is_available(), importlib.util.find_spec("flash_attn") is not None
    if cuda and flash:
        log.info("attn_implementation=auto: using flash_attention_2")
        return "flash_attention_2"
    why = "no CUDA device" if not cuda else "the flash-attn package is not installed (pip install egt[gpu])"
    log.info("attn_implementation=auto: %s, using sdpa (PyTorch scaled-dot-product attention)", why)
    return "sdpa"


def model_dir(cfg: DictConfig, pipe: Any) -> Path:
    """The model directory for ``cfg.model``, building the tiny/demo model on first use."""
    if cfg.model.path:
        return Path(cfg.model.path).expanduser().resolve()
    from egt.data.world import WorldConfig, world_corpus
    from egt.models.builder import TinyVLMSpec, build_tiny_vlm

    build = to_container(cfg.model.build)
    kind = build.pop("kind", "world")
    if kind not in BUILD_KINDS:
        raise ValueError(f"model.build.kind={kind!r} is not one of {list(BUILD_KINDS)}")
    what = {"name": cfg.model.name, "build": build, "corpus_lines": CORPUS_LINES}
    if kind != "world":  # the world kind's keys stay what they were before kinds existed
        what = {"name": cfg.model.name, "build": build, "kind": kind, "replica_version": REPLICA_VERSION}
    key = make_key("models", what, version=BUILD_VERSION)
    with pipe.store.open("models", key) as art:
        if not art.reused:
            if kind == "qwen2_5_vl_replica":
                from egt.models.replica import build_qwen2_5_vl_replica
                build_qwen2_5_vl_replica(art.path / "model", TinyVLMSpec(**build))
            else:
                corpus = world_corpus(WorldConfig(seed=0), n=CORPUS_LINES)
                build_tiny_vlm(art.path / "model", TinyVLMSpec(**build), corpus)
            n_params = sum(p.numel() for p in _load(art.path / "model", cfg).parameters())
            art.finish({"name": cfg.model.name, "parameters": n_params})
    return art.path / "model"


def _load(path: Path, cfg: DictConfig):
    from egt.models.loader import load_model
    return load_model(path, dtype=cfg.model.dtype, attn_implementation=resolve_attn(cfg.model.attn_implementation),
                      trust_remote_code=cfg.model.trust_remote_code)


def pixel_budget(cfg: DictConfig) -> dict[str, int]:
    """``{"min_pixels": …, "max_pixels": …}`` for the ones ``model.*`` sets (empty: the checkpoint's own);
    what the processor gets, and what goes into the artifact keys of the stages that encode images."""
    return {k: int(cfg.model[k]) for k in ("min_pixels", "max_pixels") if cfg.model.get(k) is not None}


def load_for_inference(path: str | Path, cfg: DictConfig) -> tuple[Any, Any]:
    """Model (eval mode) + processor from ``path`` with the config's dtype, attention and pixel budget."""
    from egt.models.loader import load_processor
    return _load(Path(path), cfg), load_processor(path, trust_remote_code=cfg.model.trust_remote_code,
                                                  **pixel_budget(cfg))


def load_for_training(path: str | Path, cfg: DictConfig):
    """Model + processor from ``path`` with the config's dtype / attention / pixel budget / freezing choices."""
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
    if cfg.model.gradient_checkpointing:  # non-reentrant: works with DDP and frozen inputs
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        log.info("gradient checkpointing on")
    model.train()
    return model, processor
