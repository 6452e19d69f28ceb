"""OmegaConf helpers shared by the config schema and the stages (no egt imports)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

__all__ = ["to_container"]


def to_container(cfg: DictConfig) -> dict:
    """Plain data, interpolations resolved; choice fields (egt.choices) as plain ``str``."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
