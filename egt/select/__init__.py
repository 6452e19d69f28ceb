"""Entropy scores, selection methods and curricula (paper §2.3–2.4, docs/design.md §4)."""

from egt.select.curriculum import epoch_ids, make_sampler
from egt.select.selection import select

__all__ = ["epoch_ids", "make_sampler", "select"]
