"""SFT examples: the data set's samples joined with their kept trajectories."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
from datasets import Dataset
from torch.utils.data import Dataset as TorchDataset

from egt.data.encode import IGNORE, ChatEncoder
from egt.data.schema import BadSampleError
from egt.sft.cache import EncodingCache

log = logging.getLogger(__name__)


def column(ds: Dataset, name: str) -> list:
    """A column as a list, read in one batch: iterating ``ds[name]`` formats row by row (~20 s per
    100k rows of the synthetic pool)."""
    return ds.select_columns([name])[:][name] if len(ds) else []


def join_trajectories(pool: Dataset, trajectories: Dataset) -> Dataset:
    """Samples of ``pool`` that have a kept trajectory, with its text as column ``target``."""
    targets = dict(zip(column(trajectories, "id"), column(trajectories, "target")))
    ids = column(pool, "id")
    known = set(ids)
    missing = [i for i in targets if i not in known]
    if missing:
        raise ValueError(f"{len(missing)} trajectories name samples not in the pool, e.g. {missing[:3]}")
    keep = [i for i, sid in enumerate(ids) if sid in targets]
    # the join is a function of its two inputs: fingerprinted from theirs, not by hashing 100k-element lists
    fp = hashlib.sha256(f"join:{pool._fingerprint}:{trajectories._fingerprint}".encode()).hexdigest()[:16]
    joined = pool.select(keep, new_fingerprint=f"{fp}-select")
    return joined.add_column("target", [targets[ids[i]] for i in keep], new_fingerprint=fp)


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
    """Samples read from the encoding cache (:mod:`egt.sft.cache`): ``rows`` are its row numbers (rows of
    ``joined``), bad ones already dropped; ``target_tokens`` as :meth:`SFTDataset.check` counts them. A
    check-only cache (no tensors) encodes ``joined``'s row with ``encoder`` at every access."""

    def __init__(
        self, cache: EncodingCache, rows: list[int], joined: Dataset | None = None, encoder: ChatEncoder | None = None
    ):
        if not cache.has_tensors and (joined is None or encoder is None) and rows:
            raise ValueError(f"the encoding cache {cache.path} holds no tensors: pass the joined rows and the encoder")
        self.cache, self.rows, self.joined, self.encoder = cache, rows, joined, encoder
        self.target_tokens = cache.target_tokens[rows].tolist() if rows else []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.cache.has_tensors:
            return self.cache[self.rows[i]]
        row = self.joined[self.rows[i]]
        return self.encoder.encode_example(row, row["target"])


def from_cache(
    cache: EncodingCache,
    rows: list[int],
    on_bad_sample: str,
    joined: Dataset | None = None,
    encoder: ChatEncoder | None = None,
) -> tuple[CachedSFTDataset, dict[str, Any]]:
    """The cache's ``rows`` as a data set; a bad one raises its error, or with ``skip`` is left out and
    counted (what :meth:`SFTDataset.check` does with the same rows). ``joined`` / ``encoder``: for a
    check-only cache, what encodes a row."""
    idx = np.asarray(rows, dtype=np.int64)
    bad = idx[~cache.ok[idx]] if len(idx) else idx
    for i in bad.tolist():
        e = cache.error(i)
        if on_bad_sample != "skip":
            raise e
        log.warning("[sft] skipping: %s", e)
    good = idx[cache.ok[idx]].tolist() if len(idx) else []
    return CachedSFTDataset(cache, good, joined, encoder), {"checked": len(idx), "skipped": len(bad)}
