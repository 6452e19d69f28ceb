"""The SFT loss (paper eq. 2) weighted by tokens across gradient accumulation and data parallelism.

Lightning averages the loss of the ``accumulate_grad_batches`` micro-batches of one optimizer step
(and DDP / ZeRO average the gradients of the W ranks), so a loss that is each micro-batch's own
token mean optimises the mean of micro-batch means: micro-batches of 1 target token with loss 4 and
of 3 tokens with loss 0 give 2.0, not the token-weighted 1.0. Here every micro-batch's NLL sum is
divided by the number of target tokens of the *whole* optimizer step (all its micro-batches, on all
ranks), counted ahead from the sampler's order and each sample's target length, and multiplied by
acc · W to undo the averaging: the step's gradient is that of Σ NLL / N_tokens, what one process
with the whole step in one batch would compute (as TRL / transformers do with
``num_items_in_batch``). ``sft.loss_reduction=sequence`` instead weighs every sequence equally (its
token mean, averaged over the step's sequences).

The NLL comes from the last hidden states through the output head in chunks
(:func:`egt.rl.functional.chunked_token_logprobs`), so no [b, T, V] fp32 tensor is held; with
``model.liger=true`` on CUDA, from Liger's fused linear cross-entropy instead (:func:`_fused_nll`).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from egt.data.encode import IGNORE
from egt.models import liger as liger_kernels
from egt.probe.probe import last_hidden_and_head
from egt.rl.functional import chunked_token_logprobs
from egt.sft import packing
from egt.sft.packing import PACK_INDEX

log = logging.getLogger(__name__)

REDUCTIONS = ("token", "sequence")


def step_window(
    order: Sequence[int], local_batch: int, world_size: int, accumulate: int, local_consumed: int
) -> list[int]:
    """Indices (into the data set) of every sample in the optimizer step that the local micro-batch
    starting at ``local_consumed`` (this rank's samples consumed this epoch) belongs to, over all ranks.

    ``order`` is the epoch's global order padded to a multiple of W (rank r takes positions r, r+W, …,
    so local batch k of every rank is global positions [k·b·W, (k+1)·b·W)); a step is ``accumulate``
    consecutive local batches; the epoch's last step may be shorter.

    >>> step_window(list(range(10)), local_batch=2, world_size=1, accumulate=2, local_consumed=2)
    [0, 1, 2, 3]
    >>> step_window(list(range(10)), local_batch=2, world_size=1, accumulate=2, local_consumed=8)
    [8, 9]
    >>> step_window(list(range(8)), local_batch=1, world_size=2, accumulate=2, local_consumed=2)
    [4, 5, 6, 7]
    """
    k = local_consumed // local_batch  # local batch index in the epoch
    per_step = local_batch * world_size * accumulate  # global positions per optimizer step
    start = (k // accumulate) * per_step
    return list(order[start : start + per_step])


def sft_nll(
    model: Any, batch: dict[str, torch.Tensor], chunk: int | None = 256, liger: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of the target tokens and the target mask, both [b, T−1] (fp32, nats; 0 off target):
    position t predicts token t+1, targets are the tokens whose label is not −100. ``chunk`` positions
    go through the output head at a time, recomputed in backward; ``None``: all target positions in
    one pass, kept for backward (as transformers' own loss; 12% faster per 7B SFT step on an H200,
    at O(tokens × V) fp32 memory). ``liger`` (``model.liger``): Liger's fused linear cross-entropy where
    it runs (:func:`_fused_nll`; ``chunk`` is then unused), else the chunked path."""
    labels = batch["labels"]  # [b, T]
    if PACK_INDEX in batch:  # sft.packing: run the packed rows, hand back the padded layout
        return _packed_nll(model, batch, chunk, liger)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden, head = last_hidden_and_head(model, inputs)  # [b, T, H]
    targets = labels[:, 1:]  # [b, T−1]
    mask = targets != IGNORE
    return _nll(hidden, head, targets, mask, chunk, liger), mask


def _packed_nll(
    model: Any, batch: dict[str, torch.Tensor], chunk: int | None, liger: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sft_nll` of a packed batch (:mod:`egt.sft.packing`): the rows [R, W] through the model with
    per-sequence positions and blocked attention, the NLL and mask [R, W−1] gathered back to the padded
    layout [b, T_max−1] of the same samples (the fused loss's too: it fills the same [R, W−1] layout)."""
    labels, index = batch["labels"], batch[PACK_INDEX]  # [R, W], [b, 5]
    hidden, head = last_hidden_and_head(model, packing.model_inputs(model, batch))  # [R, W, H]
    targets = labels[:, 1:]  # [R, W−1]
    mask = targets != IGNORE
    nll = _nll(hidden, head, targets, mask, chunk, liger)  # [R, W−1]
    return packing.unpack(nll, index), packing.unpack(mask.float(), index).bool()


def _nll(
    hidden: torch.Tensor, head: Any, targets: torch.Tensor, mask: torch.Tensor, chunk: int | None, liger: bool
) -> torch.Tensor:
    """NLL [B, L−1] fp32 (0 off ``mask``) of ``targets`` [B, L−1] from ``hidden`` [B, L, H] (position t
    predicts ``targets[:, t]``) through ``head``: Liger's fused kernel when ``liger`` and it runs, else chunked."""
    if liger and (nll := _fused_nll(hidden, head, targets, mask)) is not None:
        return nll
    whole = chunk is None
    logp, _ = chunked_token_logprobs(
        hidden[:, :-1],
        head,
        targets.clamp(min=0),
        mask=mask,
        chunk=max(1, int(mask.sum())) if whole else chunk,
        recompute=not whole,
    )
    return -logp


def _fused_nll(hidden: torch.Tensor, head: Any, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """The NLL through Liger's fused linear cross-entropy (egt.models.liger.fused_linear_cross_entropy,
    ``reduction="none"``: liger-kernel 0.8.5 ``ops/fused_linear_cross_entropy.py``, whose backward folds the
    per-token upstream gradient into each row's logit gradient before it is summed into the head's weight
    gradient), or None where it cannot run here (the chunked path then runs):

    ``nll[mask] = −log softmax(hidden[:, :-1][mask] · Wᵀ + b)[targets[mask]]`` — the N target positions
    only ([N, H]; off-target positions are never computed, as in the chunked path), fp32 per-token loss in
    nats, the [N, V] logits formed chunk by chunk in Triton and never kept. Returns [B, L−1] fp32, 0 off
    ``mask`` (the layout :func:`egt.sft.packing.unpack` maps back for packed rows).

    None (chunked instead, one log line) where liger-kernel or CUDA is missing, there is no target, or the
    head's weight is a DeepSpeed ZeRO-3 partition (the kernel reads the weight tensor directly, outside
    the head's forward that would gather it)."""
    n = int(mask.sum())
    weight = getattr(head, "weight", None)
    if n == 0 or weight is None:
        return None
    if hasattr(weight, "ds_id"):
        _log_once("zero3", "model.liger: the output head is ZeRO-3-partitioned; the SFT loss runs chunked")
        return None
    fn = liger_kernels.fused_linear_cross_entropy(ignore_index=IGNORE, reduction="none")
    if fn is None:
        _log_once("missing", "model.liger: Liger's fused linear cross-entropy cannot run here; chunked SFT loss")
        return None
    _log_once("fused", "model.liger: the SFT loss runs through Liger's fused linear cross-entropy", logging.INFO)
    bias = getattr(head, "bias", None)
    x = hidden[:, :-1][mask]  # [N, H]
    per_token = fn(weight, x, targets[mask]) if bias is None else fn(weight, x, targets[mask], bias)  # [N]
    nll = hidden.new_zeros(mask.shape, dtype=torch.float32)
    nll[mask] = per_token.float()
    return nll


_logged: set[str] = set()


def _log_once(key: str, message: str, level: int = logging.WARNING) -> None:
    if key not in _logged:
        _logged.add(key)
        log.log(level, message)


def reduce_nll(
    nll: torch.Tensor, mask: torch.Tensor, reduction: str, step_tokens: float, step_sequences: float, scale: float = 1.0
) -> torch.Tensor:
    """This micro-batch's share of the step loss: Σ NLL / step_tokens (``token``) or Σ_seq mean_seq NLL /
    step_sequences (``sequence``), times ``scale`` (acc · W, which Lightning's and DDP's averaging undo).

    >>> nll = torch.tensor([[4.0, 0.0, 0.0]]); m = torch.tensor([[True, False, False]])
    >>> reduce_nll(nll, m, "token", step_tokens=4, step_sequences=2, scale=2)      # 4 / 4 · 2
    tensor(2.)
    >>> reduce_nll(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), "token", 4, 2, 2)
    tensor(0.)
    """
    m = mask.to(nll.dtype)
    if reduction == "token":
        return (nll * m).sum() / max(step_tokens, 1.0) * scale
    if reduction == "sequence":
        per_seq = (nll * m).sum(-1) / m.sum(-1).clamp(min=1.0)  # [b]
        return per_seq[m.sum(-1) > 0].sum() / max(step_sequences, 1.0) * scale
    raise ValueError(f"sft.loss_reduction={reduction!r} is not one of {list(REDUCTIONS)}")
