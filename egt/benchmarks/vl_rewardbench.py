"""VL-RewardBench (Li et al., 2024): 1,250 pairs, categories from the id prefix.

Reads the official release (HF parquet: ``id, query, response[2], image{bytes,path},
human_ranking`` with ``[0, 1]`` = the first response is better) or R1-Reward's converted
jsonl (``id, prompt, chosen, rejected, image`` = a path relative to the jsonl's folder or
the benchmark folder). Official protocol: each pair is shown in a seeded random order,
unparsed outputs are excluded from the denominator, and the metrics are accuracy per
category, overall (micro) and the macro average over the three categories (the
headline). Paper Table 1 reports the overall (micro) accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from egt.benchmarks.base import Benchmark, BenchmarkDataError, resolve_image

HALLUCINATION = ("RLAIF", "RLHF", "hallucination")
REASONING = ("mathverse", "mmmu")


def category_of(item_id: str) -> str:
    """The category of an item from its id prefix (docs/design.md §6.2).

    >>> category_of("RLHF-V-31"), category_of("mmmu_12"), category_of("wildvision-battle_3")
    ('hallucination', 'reasoning', 'general')
    """
    if item_id.startswith(HALLUCINATION):
        return "hallucination"
    if item_id.startswith(REASONING):
        return "reasoning"
    return "general"


class VLRewardBench(Benchmark):
    """VL-RewardBench as its authors score it: seeded random order; unparsed excluded; macro headline.
    The module docstring gives the layout and the sources."""

    name = "vl_rewardbench"
    version = 1
    order = "random_swap"
    on_parse_failure = "exclude"
    categories = ("reasoning", "hallucination", "general")
    headline_key = "macro"
    columns = (
        ("category/reasoning", "Reasoning"),
        ("category/hallucination", "Hallu."),
        ("category/general", "General"),
        ("overall", "Overall"),
        ("macro", "Macro"),
    )

    def __init__(self, path: Optional[str] = None, format: str = "auto", **kw: Any) -> None:
        super().__init__(path, **kw)
        if format not in ("auto", "official", "r1_reward"):
            raise ValueError(f"vl_rewardbench format must be auto | official | r1_reward, got {format!r}")
        self.format = format

    def where_to_get(self) -> str:
        return (
            "Download the HF dataset MMInstruction/VL-RewardBench (its parquet files) or R1-Reward's "
            "inference/VL-Reward-Bench/data.jsonl with its images into it."
        )

    def load_items(self, root: Path) -> list[dict[str, Any]]:
        if root.is_file():
            files = [root]
        else:
            parquet = sorted(root.rglob("*.parquet"))
            jsonl = sorted(root.rglob("*.jsonl"))
            files = parquet if (self.format != "r1_reward" and parquet) else jsonl
            if self.format == "official" and not parquet:
                files = []
        if not files:
            raise BenchmarkDataError(
                root, None, "no VL-RewardBench data file (*.parquet or *.jsonl) found. " + self.where_to_get()
            )
        items: list[dict[str, Any]] = []
        for f in files:
            items += self._load_parquet(f) if f.suffix == ".parquet" else self._load_jsonl(f, root)
        return items

    def _load_parquet(self, file: Path) -> list[dict[str, Any]]:
        import pandas as pd

        df = pd.read_parquet(file)
        missing = {"id", "query", "response", "image", "human_ranking"} - set(df.columns)
        if missing:
            raise BenchmarkDataError(file, None, f"not the VL-RewardBench parquet format: no columns {sorted(missing)}")

        def convert(row: dict, i: int) -> dict[str, Any]:
            responses, ranking = list(row["response"]), [int(x) for x in row["human_ranking"]]
            if len(responses) != 2 or len(ranking) != 2 or ranking[0] == ranking[1]:
                raise BenchmarkDataError(
                    file,
                    i,
                    f"expected 2 responses and a strict human_ranking, got "
                    f"{len(responses)} responses, ranking {ranking}",
                    "malformed row",
                )
            image = row["image"]
            if not isinstance(image, dict) or not (image.get("bytes") or image.get("path")):
                raise BenchmarkDataError(file, i, "image has neither bytes nor path", "missing image")
            return {
                "id": str(row["id"]),
                "category": category_of(str(row["id"])),
                "images": [image],
                "query": row["query"],
                "response_1": responses[0],
                "response_2": responses[1],
                "label": 1 if ranking[0] < ranking[1] else 2,
            }

        return self.convert_rows(file, df.to_dict("records"), convert)

    def _load_jsonl(self, file: Path, root: Path) -> list[dict[str, Any]]:
        def convert(line: str, i: int) -> dict[str, Any]:
            row = json.loads(line)
            image = resolve_image(file, i, row["image"], file.parent, root if root.is_dir() else file.parent)
            return {
                "id": str(row["id"]),
                "category": category_of(str(row["id"])),
                "images": [str(image)],
                "query": row["prompt"],
                "response_1": row["chosen"],
                "response_2": row["rejected"],
                "label": 1,
            }

        with open(file, encoding="utf-8") as fh:
            lines = [ln for ln in fh if ln.strip()]
        return self.convert_rows(file, lines, convert)
