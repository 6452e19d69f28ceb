"""The synthetic bench: the data stage's ``bench`` split (egt's embedded world).

Categories general / hallucination / reasoning like VL-RewardBench; the pairs are shown
as stored (the data stage already randomised the order, seeded); an unparsed judgement
counts as wrong. ``path`` may point at any saved ``datasets`` directory with a ``bench``
split (or a single split); otherwise the pipeline's data stage supplies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from egt.benchmarks.base import Benchmark, BenchmarkDataError


class SyntheticBench(Benchmark):
    """The data stage's bench split scored as VL-RewardBench's categories: stored order; unparsed = wrong.
    The module docstring gives the layout and the sources."""

    name = "synthetic"
    version = 1
    order = "as_given"
    on_parse_failure = "wrong"
    categories = ("reasoning", "hallucination", "general")
    headline_key = "overall"
    columns = (
        ("category/reasoning", "Reasoning"),
        ("category/hallucination", "Hallu."),
        ("category/general", "General"),
        ("overall", "Overall"),
        ("macro", "Macro"),
    )

    def __init__(self, path: Optional[str] = None, split: str = "bench", **kw: Any) -> None:
        super().__init__(path, **kw)
        self.split = split
        self.data_key: Optional[str] = None

    source_stage = "data"

    def use_dataset(self, path: str, key: str) -> None:
        """The data stage's saved DatasetDict (``path``), identified by its artifact key (``key``)."""
        self.path, self.data_key = path, key

    def root(self, data_root: Optional[str]) -> Path:
        if not self.path:
            raise BenchmarkDataError(
                "synthetic",
                None,
                "no dataset: run it inside the pipeline (the data stage supplies it) or set the benchmark's path",
            )
        return super().root(data_root)

    def load_items(self, root: Path) -> list[dict[str, Any]]:
        from datasets import DatasetDict

        from egt.utils.atomic import load_saved_dataset

        ds = load_saved_dataset(root)
        if isinstance(ds, DatasetDict):
            if self.split not in ds:
                raise BenchmarkDataError(root, None, f"no split {self.split!r} (has {list(ds)})")
            ds = ds[self.split]

        def convert(row: dict, i: int) -> dict[str, Any]:
            return {
                "id": row["id"],
                "category": row.get("category") or "general",
                "images": list(row["images"]),
                "query": row["query"],
                "response_1": row["response_1"],
                "response_2": row["response_2"],
                "label": int(row["label"]),
            }

        items = self.convert_rows(root / self.split, ds, convert)
        # the split's state.json holds its arrow files' fingerprints
        self.files = sorted((root / self.split).glob("state.json")) or sorted(root.glob("state.json"))
        return items

    def fingerprint(self) -> str:
        return f"data:{self.data_key}" if self.data_key else super().fingerprint()
