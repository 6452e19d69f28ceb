"""SFT examples: the data set's samples joined with their kept trajectories."""
from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset
from torch.utils.data import Dataset as TorchDataset

from egt.data.encode import IGNORE, ChatEncoder
from egt.data.schema import BadSampleError

log = logging.getLogger(__name__)


def join_trajectories(pool: Dataset, trajectories: Dataset) -> Dataset:
    """Samples of ``pool`` that have a kept trajectory, with its text as column ``target``."""
    targets = dict(zip(trajectories["id"], trajectories["target"]))
    ids = pool["id"]  # read the column once: reading it per trajectory made this quadratic
    known = set(ids)
    missing = [i for i in targets if i not in known]
    if missing:
        raise ValueError(f"{len(missing)} trajectories name samples not in the pool, e.g. {missing[:3]}")
    keep = [i for i, sid in enumerate(ids) if sid in targets]
    joined = pool.select(keep)
    return joined.add_column("target", [targets[sid] for sid in joined["id"]])


class SFTDataset(TorchDataset):
    """Encodes through the processor; :meth:`check` encodes every sample once up front so bad
    ones fail (or are skipped and counted) before training starts, and with ``cache`` keeps
    the encodings (small data sets: the processor then runs once, not once per epoch)."""

    def __init__(self, ds: Dataset, encoder: ChatEncoder, cache: bool = False):
        self.ds, self.encoder, self.cache = ds, encoder, cache
        self._encoded: list[dict[str, Any]] | None = None
        self.target_tokens: list[int] = []  # per kept sample, from check(): the token-weighted loss counts ahead

    def __len__(self) -> int:
        return len(self.ds)

    def _encode(self, i: int) -> dict[str, Any]:
        row = self.ds[i]
        return self.encoder.encode_example(row, row["target"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._encoded[i] if self._encoded is not None else self._encode(i)

    def check(self, on_bad_sample: str) -> dict[str, Any]:
        good: list[int] = []
        encoded: list[dict[str, Any]] = []
        tokens: list[int] = []
        for i in range(len(self.ds)):
            try:
                ex = self._encode(i)
            except BadSampleError as e:
                if on_bad_sample != "skip":
                    raise
                log.warning("[sft] skipping: %s", e)
                continue
            good.append(i)
            tokens.append(int((ex["labels"] != IGNORE).sum()))
            if self.cache:
                encoded.append(ex)
        skipped = len(self.ds) - len(good)
        if skipped:
            self.ds = self.ds.select(good)
        self._encoded = encoded if self.cache else None
        self.target_tokens = tokens
        return {"checked": len(good) + skipped, "skipped": skipped}
