"""``model.liger=true``: Liger kernels (arXiv 2410.10989; linkedin/Liger-Kernel, pip ``liger-kernel``, the
``egt[liger]`` extra: a ~0.9 MB pure-Python wheel over Triton, so CUDA only) for the Qwen2.5-VL models that
SFT and RL train.

What changes: RMSNorm (``y = x / sqrt(mean(x²) + eps) · w``) and the SwiGLU MLP (``down(silu(gate(x)) ⊙ up(x))``)
run as fused Triton kernels: the same functions with another summation order and fewer saved activations,
so numbers differ at the kernel's rounding (bf16: ~1e-3 relative) and ``model.liger`` enters the SFT, rft and
RL artifact keys when on (:func:`key_extras`; absent when off, so earlier keys are unchanged).

egt calls ``liger_kernel.transformers.apply_liger_kernel_to_qwen2_5_vl`` (liger-kernel 0.8.5,
``src/liger_kernel/transformers/monkey_patch.py``) on the loaded instance with ``rms_norm=True, swiglu=True``
and **not** its ``fused_linear_cross_entropy`` (that one replaces ``model.forward`` with Liger's
``lce_forward``, which computes HF's mean loss from ``labels``, not egt's chunked per-token loss with its
reductions, egt.sft.loss) nor ``rope`` (it assigns ``modeling_qwen2_5_vl.apply_multimodal_rotary_pos_emb``,
a name transformers 5.x no longer calls). The function also rebinds the module-level classes
(``Qwen2_5_VLRMSNorm``, ``Qwen2MLP``) so that every model built later in the process would be Liger's;
egt restores them after the call, so only the instance asked for changes (the probe and eval models of the
same run stay stock, as their keys say).

The fused linear cross-entropy (loss from hidden states and the output head without materialising
``[tokens, vocab]`` logits) is exposed by :func:`fused_linear_cross_entropy`; egt.sft.loss calls it with
``reduction="none"`` on the target positions when ``model.liger`` is on (``egt.sft.loss._fused_nll``).
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

PATCHED_ATTRS = ("Qwen2RMSNorm", "Qwen2_5_VLRMSNorm", "Qwen2MLP", "CrossEntropyLoss", "apply_multimodal_rotary_pos_emb")


def liger_version() -> str | None:
    """The installed ``liger-kernel`` distribution's version, or None."""
    try:
        return importlib.metadata.version("liger-kernel")
    except importlib.metadata.PackageNotFoundError:
        return None


def check(device: str | None = None) -> str:
    """Raise a clear error when ``model.liger=true`` cannot run here; return the liger-kernel version."""
    version = liger_version()
    if version is None:
        raise ImportError(
            "model.liger=true needs the liger-kernel package: pip install egt[liger] (CUDA machines; offline, "
            "pip install .wheels/liger_kernel-*.whl triton), or write model.liger=false"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda"):
        raise RuntimeError(
            f"model.liger=true needs a CUDA device (Liger's kernels are Triton); this run is on {device}: "
            "write model.liger=false"
        )
    return version


def apply(model: Any, device: str | None = None) -> Any:
    """Liger's RMSNorm and SwiGLU kernels in ``model`` (a Qwen2.5-VL ``…ForConditionalGeneration``, its
    ``Qwen2_5_VLModel`` or text model), in place; other models raise. Returns ``model``."""
    version = check(device)
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as mq

    if not isinstance(model, (mq.Qwen2_5_VLForConditionalGeneration, mq.Qwen2_5_VLModel, mq.Qwen2_5_VLTextModel)):
        raise TypeError(
            f"model.liger=true patches Qwen2.5-VL models only (liger-kernel's apply_liger_kernel_to_qwen2_5_vl); "
            f"this model is a {type(model).__name__}: write model.liger=false"
        )
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl

    saved = {name: getattr(mq, name) for name in PATCHED_ATTRS if hasattr(mq, name)}
    try:
        apply_liger_kernel_to_qwen2_5_vl(
            rope=False, cross_entropy=False, fused_linear_cross_entropy=False, rms_norm=True, swiglu=True, model=model
        )
    finally:
        for name, value in saved.items():  # only this instance changes
            setattr(mq, name, value)
    log.info("model.liger=true: liger-kernel %s RMSNorm + SwiGLU kernels in %s", version, type(model).__name__)
    return model


def maybe_apply(model: Any, cfg: Any) -> Any:
    """:func:`apply` when ``cfg.model.liger`` is true, else ``model`` unchanged."""
    return apply(model) if cfg.model.get("liger", False) else model


def key_extras(cfg: Any) -> dict[str, bool]:
    """What ``model.liger`` adds to the SFT, rft and RL keys: ``{"liger": True}`` when on, nothing when off (so
    every key from before it existed is unchanged)."""
    return {"liger": True} if cfg.model.get("liger", False) else {}


def fused_linear_cross_entropy(ignore_index: int = -100, reduction: str = "sum") -> Any | None:
    """Liger's fused linear cross-entropy, or None where it cannot run (not installed, or no CUDA).

    The callable is ``loss_fn(lm_head_weight [V, H], hidden [N, H], targets [N]) -> loss`` (and ``bias=`` as
    a fourth argument): ``-Σ_i log softmax(hidden_i · Wᵀ)[targets_i]`` over targets ≠ ``ignore_index``
    (``reduction="sum"``; "mean" divides by their count, "none" gives ``[N]``), in nats, computed chunk by
    chunk in Triton with the gradient formed in the forward pass, so no ``[N, V]`` logits are kept
    (liger-kernel 0.8.5 ``transformers/fused_linear_cross_entropy.py`` ``LigerFusedLinearCrossEntropyLoss``)."""
    if liger_version() is None or not torch.cuda.is_available():
        return None
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
