"""Benchmarks, each scored as its authors score it (docs/design.md §6); look them up by name.

>>> from egt.benchmarks import get, names
>>> names()
['mm_rlhf_rewardbench', 'multimodal_rewardbench', 'synthetic', 'vl_rewardbench']
>>> get("vl_rewardbench").on_parse_failure
'exclude'
"""
from egt.benchmarks import mm_rlhf_rewardbench, multimodal_rewardbench, synthetic, vl_rewardbench  # noqa: F401
from egt.benchmarks.base import Benchmark, BenchmarkDataError, open_images
from egt.benchmarks.registry import get, names, register

__all__ = ["Benchmark", "BenchmarkDataError", "get", "names", "open_images", "register"]
