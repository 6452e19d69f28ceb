"""SFT examples: the data set's samples joined with their kept trajectories."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from datasets import Dataset
from torch.utils.data import Dataset as TorchDataset

from egt.data.encode import IGNORE, ChatEncoder
from egt.data.schema import BadSampleError
from egt.sft.cache import EncodingCache

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
    """Encodes through the processor at every access (``sft.cache_encodings=false``); :meth:`check`
    encodes every sample once up front so bad ones fail (or are skipped and counted) before training
    starts, and counts each one's target tokens (the token-weighted loss needs them ahead)."""

    def __init__(self, ds: Dataset, encoder: ChatEncoder):
        self.ds, self.encoder = ds, encoder
        self.target_tokens: list[int] = []  # per kept sample, from check()

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.ds[i]
        return self.encoder.encode_example(row, row["target"])

    def check(self, on_bad_sample: str) -> dict[str, Any]:
        good: list[int] = []
        tokens: list[int] = []
        for i in range(len(self.ds)):
            try:
                ex = self[i]
            except BadSampleError as e:
                if on_bad_sample != "skip":
                    raise
                log.warning("[sft] skipping: %s", e)
                continue
            good.append(i)
            tokens.append(int((ex["labels"] != IGNORE).sum()))
        skipped = len(self.ds) - len(good)
        if skipped:
            self.ds = self.ds.select(good)
        self.target_tokens = tokens
        return {"checked": len(good) + skipped, "skipped": skipped}


class CachedSFTDataset(TorchDataset):
    """Samples read from the encoding cache (:mod:`egt.sft.cache`): ``rows`` are its row numbers, bad
    ones already dropped; ``target_tokens`` as :meth:`SFTDataset.check` counts them."""

    def __init__(self, cache: EncodingCache, rows: list[int]):
        self.cache, self.rows = cache, rows
        self.target_tokens = cache.target_tokens[rows].tolist() if rows else []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.cache[self.rows[i]]


def from_cache(cache: EncodingCache, rows: list[int], on_bad_sample: str) -> tuple[CachedSFTDataset, dict[str, Any]]:
    """The cache's ``rows`` as a data set; a bad one raises its error, or with ``skip`` is left out and
    counted (what :meth:`SFTDataset.check` does with the same rows)."""
    idx = np.asarray(rows, dtype=np.int64)
    bad = idx[~cache.ok[idx]] if len(idx) else idx
    for i in bad.tolist():
        e = cache.error(i)
        if on_bad_sample != "skip":
            raise e
        log.warning("[sft] skipping: %s", e)
    good = idx[cache.ok[idx]].tolist() if len(idx) else []
    return CachedSFTDataset(cache, good), {"checked": len(idx), "skipped": len(bad)}
