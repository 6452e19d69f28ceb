"""SFT as a LightningModule (paper eq. 2): NLL of the assistant tokens only."""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from egt import distributed
from egt.data.sampler import ResumableSampler


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
    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float, warmup_ratio: float,
                 total_steps: int, sampler: ResumableSampler | None = None):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.total_steps = max(1, total_steps)
        self.warmup = int(warmup_ratio * self.total_steps)
        self.sampler = sampler

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.sampler is not None:  # counted before any checkpoint of this step is written
            self.sampler.advance(batch["input_ids"].shape[0])
        loss = self.model(**batch).loss
        n_tok = (batch["labels"] != -100).sum()
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("train/target_tokens", n_tok.float(), reduce_fx="sum", batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self.model(**batch).loss
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0], sync_dist=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = distributed.adamw(params, self.lr, self.weight_decay, self._trainer)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.total_steps, self.warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.sampler is not None:
            checkpoint["egt_sampler"] = self.sampler.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.sampler is not None and "egt_sampler" in checkpoint:
            self.sampler.load_state_dict(checkpoint["egt_sampler"])
