"""How egt builds a swappable part from its config: one function for every kind.

A component is a class that subclasses its kind's base (a score ``egt.select.scores.EntropyScore``, a
selection ``egt.select.methods.Selection``, a curriculum ``egt.select.curriculum.Curriculum``, an
advantage estimator ``egt.rl.advantages.AdvantageEstimator``, a filter ``egt.rl.filters.AdvantageFilter``,
a policy loss ``egt.rl.losses.PolicyLoss``, …), named in the config by ``_target_`` with its arguments
beside it (Hydra's ``instantiate``): any importable class works, nothing to register (docs/extending.md).
"""
from __future__ import annotations

from typing import Any, TypeVar

import hydra.utils

from egt.errors import ConfigError

__all__ = ["build"]
T = TypeVar("T")


def build(node: Any, base: type[T], where: str) -> T:
    """``hydra.utils.instantiate(node)``, checked to be a ``base``; ``where`` is the config key, named in
    the errors (an unset slot, a class of another kind)."""
    if node is None:
        raise ConfigError(f"{where} is not set: pick an option of its group (e.g. entropy=answer, "
                          "selection=entropy, curriculum=ascending, rl/advantage=group)")
    obj = hydra.utils.instantiate(node)
    if not isinstance(obj, base):
        raise TypeError(f"{where}._target_ must build an {base.__module__}.{base.__name__}, got {type(obj)}")
    return obj
