"""How egt builds a swappable part from its config: one mechanism for every kind.

A component is a class that subclasses its kind's base: a score ``egt.select.scores.EntropyScore``, a
selection ``egt.select.methods.Selection``, a curriculum ``egt.select.curriculum.Curriculum``, an
advantage estimator ``egt.rl.advantages.AdvantageEstimator``, a filter ``egt.rl.filters.AdvantageFilter``,
a policy loss ``egt.rl.losses.PolicyLoss``, a logic judge ``egt.rl.judges.base.LogicJudge``, a teacher
``egt.distill.teacher.Teacher``, a benchmark ``egt.benchmarks.base.Benchmark``. The config names it by
``_target_`` with its arguments beside it (Hydra's ``instantiate``): any importable class works, nothing
to register (docs/extending.md).

Kinds whose config also takes a short name (``eval.benchmarks=[vl_rewardbench]``) find the built-in
class by convention, with no list to keep: the name is a module of the kind's package that defines
the class, whose ``name`` attribute is that name (``egt/benchmarks/vl_rewardbench.py``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from typing import Any, TypeVar

import hydra.errors
import hydra.utils

from egt.errors import ConfigError

__all__ = ["build", "builtin", "builtin_names"]
T = TypeVar("T")


def build(node: Any, base: type[T], where: str, package: str | None = None, **defaults: Any) -> T:
    """The component ``node`` describes, checked to be a ``base``; ``where`` is the config key the errors
    name. ``node``: a ``_target_`` mapping (``defaults`` fill arguments it does not give), or, for a kind
    with built-in names (``package``), a name or ``{name: …, <arguments>}``."""
    if node is None:
        raise ConfigError(
            f"{where} is not set: pick an option of its group (e.g. entropy=answer, "
            "selection=entropy, curriculum=ascending, rl/advantage=group)"
        )
    if package is not None and isinstance(node, str):
        node = {"name": node}
    if hasattr(node, "items") and "_target_" not in node and package is not None and "name" in node:
        args = {k: v for k, v in node.items() if k != "name"}
        obj = builtin(base, package, str(node["name"]), where)(**{**defaults, **args})
    else:
        try:
            obj = hydra.utils.instantiate(node, **{k: v for k, v in defaults.items() if k not in node})
        except hydra.errors.InstantiationException as e:  # a component's own ConfigError says what to write
            cause = e.__cause__
            while isinstance(cause, hydra.errors.InstantiationException):
                cause = cause.__cause__
            if isinstance(cause, ConfigError):
                raise cause from None
            raise
    if not isinstance(obj, base):
        raise TypeError(f"{where}._target_ must build an {base.__module__}.{base.__name__}, got {type(obj)}")
    return obj


def builtin_names(base: type, package: str) -> list[str]:
    """The short names of the ``base`` components egt ships in ``package``, sorted."""
    pkg = importlib.import_module(package)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if _defined(base, f"{package}.{m.name}", m.name))


def builtin(base: type[T], package: str, name: str, where: str = "") -> type[T]:
    """The ``base`` subclass that module ``<package>.<name>`` defines with ``name = <name>``; a
    ConfigError naming the known ones (with a "did you mean") otherwise."""
    cls = _defined(base, f"{package}.{name}", name) if name.isidentifier() else None
    if cls is None:
        known = builtin_names(base, package)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"{where or base.__name__}: unknown {base.__name__} {name!r}; egt has {known}.{hint} "
            "An outside one: {_target_: your.module.Class}"
        )
    return cls


def _defined(base: type, module: str, name: str) -> type | None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise
    found = [
        obj
        for obj in vars(mod).values()
        if isinstance(obj, type)
        and issubclass(obj, base)
        and obj.__module__ == module
        and not inspect.isabstract(obj)
        and getattr(obj, "name", None) == name
    ]
    return found[0] if len(found) == 1 else None
