"""Benchmarks, each scored as its authors score it (docs/design.md §6); look them up by name.

A benchmark is a :class:`Benchmark` subclass; egt's own are found by name with no list to keep: the
module ``egt/benchmarks/<name>.py`` defines the class with ``name = "<name>"`` (egt.components). An
outside one is named by ``{_target_: your.module.Class}`` in ``eval.benchmarks``.

>>> from egt.benchmarks import get, names
>>> names()
['mm_rlhf_rewardbench', 'multimodal_rewardbench', 'synthetic', 'vl_rewardbench']
>>> get("vl_rewardbench").on_parse_failure
'exclude'
"""

from typing import Any, Optional

from egt.benchmarks.base import Benchmark, BenchmarkDataError, open_images

__all__ = ["Benchmark", "BenchmarkDataError", "get", "make", "names", "open_images"]


def get(name: str) -> type[Benchmark]:
    """The built-in benchmark class called ``name`` (a ConfigError with the known names otherwise)."""
    from egt.components import builtin

    return builtin(Benchmark, __name__, name, "eval.benchmarks")


def names() -> list[str]:
    """Every built-in benchmark's name."""
    from egt.components import builtin_names

    return builtin_names(Benchmark, __name__)


def make(spec: Any, on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> Benchmark:
    """A benchmark from a built-in name, ``{name: …, <arguments>}`` or ``{_target_: …, <arguments>}``
    (egt.components.build), with eval's ``on_bad_sample``, ``limit`` and ``seed`` unless the spec sets them."""
    from omegaconf import OmegaConf

    from egt.components import build

    spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec
    return build(
        spec, Benchmark, "eval.benchmarks", package=__name__, on_bad_sample=on_bad_sample, limit=limit, seed=seed
    )
