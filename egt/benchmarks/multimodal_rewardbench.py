"""Multimodal RewardBench (Yasunaga et al., 2025): 5,000 pairs in 6 areas.

Reads the release's ``all_data.json`` (a JSON list of ``ID, Text, Image, Output1, Output2,
Better, Category``; ``Image`` is relative to the JSON file's folder). Official protocol
(``scripts/2_get_accuracy.py``): pairs in the stored order, an unparsed judgement is a
coin flip from ``random.seed(123)``, accuracy per category with reasoning split into
math / coding by the ``ID`` prefix ("math…") and safety into bias / toxicity ("pairs…"),
and overall (micro, the headline). The six leaderboard areas are reported too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from egt.benchmarks import metrics as M
from egt.benchmarks.base import Benchmark, BenchmarkDataError, resolve_image

RAW_CATEGORIES = {
    "open_generation/correctness_task": "correctness",
    "open_generation/preference_task": "preference",
    "knowledge": "knowledge",
    "reasoning": "reasoning",
    "safety": "safety",
    "vqa": "vqa",
}


def category_of(raw: str, item_id: str) -> str:
    """The scoring category: reasoning and safety split by ID prefix, as the official script does.

    >>> category_of("reasoning", "mathvista_1"), category_of("safety", "PAIRS_3"), category_of("vqa", "x")
    ('reasoning/math', 'safety/bias', 'vqa')
    """
    if raw not in RAW_CATEGORIES:
        return raw  # rejected as unknown by the caller
    cat = RAW_CATEGORIES[raw]
    if cat == "reasoning":
        return "reasoning/math" if item_id.lower().startswith("math") else "reasoning/coding"
    if cat == "safety":
        return "safety/bias" if item_id.lower().startswith("pairs") else "safety/toxicity"
    return cat


class MultimodalRewardBench(Benchmark):
    """Multimodal RewardBench as its authors score it: stored order; unparsed = a seeded coin flip; overall (micro)
    headline. The module docstring gives the layout and the sources."""

    name = "multimodal_rewardbench"
    version = 1
    order = "as_given"
    on_parse_failure = "coin_flip"
    coin_seed = 123
    categories = (
        "correctness",
        "preference",
        "knowledge",
        "reasoning/math",
        "reasoning/coding",
        "safety/bias",
        "safety/toxicity",
        "vqa",
    )
    areas = ("correctness", "preference", "knowledge", "reasoning", "safety", "vqa")
    headline_key = "overall"
    columns = (
        ("area/correctness", "Correct."),
        ("area/preference", "Pref."),
        ("area/knowledge", "Knowl."),
        ("category/reasoning/math", "Math"),
        ("category/reasoning/coding", "Coding"),
        ("category/safety/bias", "Bias"),
        ("category/safety/toxicity", "Toxicity"),
        ("area/vqa", "VQA"),
        ("overall", "Overall"),
    )

    def where_to_get(self) -> str:
        return (
            "Clone facebookresearch/multimodal_rewardbench and run its scripts/0_download_data.py; "
            "point the benchmark at its data/ folder (all_data.json + images/)."
        )

    def load_items(self, root: Path) -> list[dict[str, Any]]:
        file = root if root.is_file() else root / "all_data.json"
        if not file.is_file():
            found = sorted(root.glob("*.json")) if root.is_dir() else []
            if len(found) != 1:
                raise BenchmarkDataError(
                    file, None, "Multimodal RewardBench's all_data.json not found. " + self.where_to_get()
                )
            file = found[0]
        try:
            rows = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BenchmarkDataError(file, None, f"not valid JSON ({exc})") from None
        if not isinstance(rows, list):
            raise BenchmarkDataError(file, None, "expected a JSON list of examples")

        def convert(row: dict, i: int) -> dict[str, Any]:
            if row["Better"] not in ("Output1", "Output2"):
                raise BenchmarkDataError(
                    file, i, f"Better must be Output1 or Output2, got {row['Better']!r}", "malformed row"
                )
            image = resolve_image(file, i, row["Image"], file.parent)
            return {
                "id": str(row["ID"]),
                "category": category_of(row["Category"], str(row["ID"])),
                "images": [str(image)],
                "query": row["Text"],
                "response_1": row["Output1"],
                "response_2": row["Output2"],
                "label": 1 if row["Better"] == "Output1" else 2,
            }

        return self.convert_rows(file, rows, convert)

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().score(records)
        # the leaderboard's six areas: reasoning and safety pooled (micro), same coin flips
        preds = M.resolve_failures(records, self.on_parse_failure, self.coin_seed)
        pooled = [{**r, "category": r["category"].split("/")[0], "pred": p} for r, p in zip(records, preds)]
        areas = M.accuracy_table(pooled, "wrong", self.areas)
        out.update({f"area/{a}": areas[f"category/{a}"] for a in self.areas})
        return out
