"""A seeded, resumable sampler: the position inside an epoch is part of the checkpoint."""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Yields a seeded permutation per epoch (or the identity when ``shuffle`` is off).

    The training loop counts consumed samples (``advance``); ``state_dict``
    holds (epoch, consumed) and a restored sampler skips what was consumed, so
    a resumed run sees exactly the samples an uninterrupted one would.
    Lightning calls :meth:`set_epoch` at every epoch start.

    Under data parallelism (:meth:`shard`) rank r of W yields positions r, r+W, r+2W, …
    of the epoch's order (padded by wrapping around to a multiple of W, as torch's
    DistributedSampler does, so every rank has as many batches): a local batch of
    B/W on each rank is then exactly one global batch of B consecutive positions,
    the curriculum order preserved. ``consumed`` counts this rank's samples.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.consumed = 0, 0
        self._skip = 0
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> "ResumableSampler":
        """Yield only rank ``rank``'s share of every epoch (see the class docstring)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.rank, self.world_size = rank, world_size
        return self

    def local_order(self, epoch: int) -> list[int]:
        """This rank's indices for ``epoch``.

        >>> s = ResumableSampler(5, shuffle=False).shard(1, 2)
        >>> s.local_order(0), len(s)
        ([1, 3, 0], 3)
        """
        if self.world_size == 1:
            return self.order(epoch)
        return self.padded_order(epoch)[self.rank :: self.world_size]

    def padded_order(self, epoch: int) -> list[int]:
        """The epoch's global order wrapped to a multiple of the world size (what the ranks share).

        >>> ResumableSampler(3, shuffle=False).shard(0, 2).padded_order(0)
        [0, 1, 2, 0]
        """
        order = self.order(epoch)
        total = -(-len(order) // self.world_size) * self.world_size
        return (order * (total // max(1, len(order)) + 1))[:total]

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed, self._skip = epoch, 0, 0

    def advance(self, k: int) -> None:
        self.consumed += k

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return iter(self.local_order(self.epoch)[skip:])

    def __len__(self) -> int:
        return -(-self.n // self.world_size)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = int(state.get("world_size", 1))
        if saved != self.world_size:
            raise ValueError(
                f"this checkpoint was written by {saved} processes; resume it with {saved} "
                f"(now {self.world_size}): the sampler position is per rank"
            )
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._skip = self.consumed
