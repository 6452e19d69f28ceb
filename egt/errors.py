"""Errors every layer of egt raises, in a module that imports nothing of egt (so ``egt.config`` and
``egt.distributed`` can both use them without importing each other)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config that composes but cannot run; the message says what to write instead."""
