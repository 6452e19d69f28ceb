"""SFT as a LightningModule (paper eq. 2): NLL of the assistant tokens only, weighted by tokens over
the whole optimizer step (accumulation and ranks; :mod:`egt.sft.loss`)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from egt import distributed
from egt.data.sampler import ResumableSampler
from egt.sft.loss import REDUCTIONS, reduce_nll, sft_nll, step_window
from egt.sft.packing import n_samples, token_counts
from egt.utils.logging import sampler_restored


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup to 1, then cosine to 0.

    >>> warmup_cosine(0, 100, 10), warmup_cosine(10, 100, 10), round(warmup_cosine(55, 100, 10), 3)
    (0.1, 1.0, 0.5)
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class SFTModule(L.LightningModule):
    """``target_tokens[i]``: target tokens of training sample i (what the data set's check counted);
    with the ``sampler`` they give every optimizer step's token count ahead of its micro-batches.
    Without them each micro-batch is normalised by its own tokens (the old, micro-batch-mean loss).
    ``liger`` (``model.liger``): the NLL through Liger's fused linear cross-entropy (:func:`egt.sft.loss.sft_nll`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float,
        weight_decay: float,
        warmup_ratio: float,
        total_steps: int,
        sampler: ResumableSampler | None = None,
        *,
        target_tokens: list[int] | None = None,
        loss_reduction: str = "token",
        accumulate: int = 1,
        local_batch: int = 1,
        world_size: int = 1,
        chunk_size: int = 256,
        liger: bool = False,
    ):
        super().__init__()
        if loss_reduction not in REDUCTIONS:
            raise ValueError(f"sft.loss_reduction={loss_reduction!r} is not one of {list(REDUCTIONS)}")
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.total_steps = max(1, total_steps)
        self.warmup = int(warmup_ratio * self.total_steps)
        self.sampler = sampler
        self.target_tokens, self.reduction, self.chunk_size = target_tokens, loss_reduction, chunk_size
        self.liger = liger  # model.liger: the loss through Liger's fused linear cross-entropy (egt.sft.loss)
        self.accumulate, self.local_batch, self.world_size = accumulate, local_batch, world_size
        self._order: tuple[int, list[int]] | None = None  # (epoch, padded global order)
        # this process's training micro-batches: real tokens and the token slots the model ran (padding included)
        self.tokens_seen, self.slots_seen = 0, 0

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def step_counts(self) -> tuple[float, float, float]:
        """(target tokens, target sequences, scale) of the optimizer step the next micro-batch is in."""
        if self.sampler is None or self.target_tokens is None:
            return 0.0, 0.0, 0.0
        if self._order is None or self._order[0] != self.sampler.epoch:
            self._order = (self.sampler.epoch, self.sampler.padded_order(self.sampler.epoch))
        window = step_window(self._order[1], self.local_batch, self.world_size, self.accumulate, self.sampler.consumed)
        counts = [self.target_tokens[i] for i in window]
        return float(sum(counts)), float(sum(c > 0 for c in counts)), float(self.accumulate * self.world_size)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """``loss``: this micro-batch's share of the step loss (what backward needs; Lightning divides it by
        acc); ``token_loss``: its true per-token NLL (detached), what is logged and recorded, the same
        whatever ``accumulate`` is."""
        tokens, sequences, scale = self.step_counts()
        b = n_samples(batch)  # samples (a packed batch has fewer rows)
        if self.sampler is not None:  # counted before any checkpoint of this step is written
            self.sampler.advance(b)
        nll, mask = sft_nll(self.model, batch, self.chunk_size, self.liger)  # [b, T−1]
        n_tok = mask.sum()
        if scale == 0.0:  # no step counts: this micro-batch alone
            tokens, sequences, scale = float(n_tok), float((mask.sum(-1) > 0).sum()), 1.0
        loss = reduce_nll(nll, mask, self.reduction, tokens, sequences, scale)
        with torch.no_grad():  # logged: this micro-batch's token mean, comparable whatever the weighting
            mean = (nll * mask).sum() / n_tok.clamp(min=1)
        real, slots = token_counts(batch)
        self.tokens_seen, self.slots_seen = self.tokens_seen + real, self.slots_seen + slots
        self.log("train/loss", mean, prog_bar=True, batch_size=b)
        self.log("train/target_tokens", n_tok.float(), reduce_fx="sum", batch_size=1)
        self.log("train/tokens", float(real), reduce_fx="sum", batch_size=1)  # real tokens of the micro-batch
        self.log("train/padded_tokens", float(slots), reduce_fx="sum", batch_size=1)  # positions the model ran
        return {"loss": loss, "token_loss": mean}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        nll, mask = sft_nll(self.model, batch, self.chunk_size, self.liger)
        loss = (nll * mask).sum() / mask.sum().clamp(min=1)
        self.log("val/loss", loss, prog_bar=True, batch_size=n_samples(batch), sync_dist=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = distributed.adamw(params, self.lr, self.weight_decay, self._trainer)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, self.total_steps, self.warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.sampler is not None:
            checkpoint["egt_sampler"] = self.sampler.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.sampler is not None and "egt_sampler" in checkpoint:
            self.sampler.load_state_dict(checkpoint["egt_sampler"])
            sampler_restored()
