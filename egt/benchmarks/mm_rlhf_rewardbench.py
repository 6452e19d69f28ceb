"""MM-RLHF-RewardBench (Zhang et al., 2025): 170 pairs in 46 groups of one prompt each.

Reads the native jsonl (``id, image | video, prompt, chosen, rejected``); the category is
the first path component (mcq, long, short, safety, video); ``image`` is a file and
``video`` a folder of frames, relative to the jsonl's folder; ``video_frames`` frames
(32 by default) are sampled uniformly and given to the model as images. Official protocol
(as in R1-Reward's evaluation): the chosen response is shown first; Acc over pairs, and
Acc+ = the fraction of groups (same ``id``) whose pairs are all judged correctly; an
unparsed judgement counts as wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from egt.benchmarks import metrics as M
from egt.benchmarks.base import Benchmark, BenchmarkDataError, resolve_image, sample_frames


class MMRLHFRewardBench(Benchmark):
    """MM-RLHF-RewardBench as its authors score it: chosen first; Acc over pairs, Acc+ over groups; unparsed = wrong.
    The module docstring gives the layout and the sources."""

    name = "mm_rlhf_rewardbench"
    version = 1
    order = "as_given"  # chosen first
    on_parse_failure = "wrong"
    categories = ("mcq", "long", "short", "safety", "video")
    headline_key = "overall"
    columns = tuple(
        (f"category/{c}", c.upper() if c == "mcq" else c.capitalize())
        for c in ("mcq", "long", "short", "safety", "video")
    ) + (("overall", "Acc"), ("acc_plus", "Acc+"))

    def __init__(self, path: Optional[str] = None, video_frames: int = 32, **kw: Any) -> None:
        super().__init__(path, **kw)
        if video_frames < 1:
            raise ValueError("video_frames must be >= 1")
        self.video_frames = video_frames

    def where_to_get(self) -> str:
        return (
            "Download MM-RLHF-RewardBench (mm_reward_bench.jsonl with its mcq/ long/ short/ safety/ video/ "
            "folders) into it."
        )

    def load_items(self, root: Path) -> list[dict[str, Any]]:
        files = [root] if root.is_file() else sorted(root.glob("*.jsonl"))
        if not files:
            raise BenchmarkDataError(root, None, "no MM-RLHF-RewardBench jsonl found. " + self.where_to_get())
        items: list[dict[str, Any]] = []
        for file in files:

            def convert(line: str, i: int, file: Path = file) -> dict[str, Any]:
                row = json.loads(line)
                rel = row.get("image") or row.get("video")
                if not rel:
                    raise BenchmarkDataError(file, i, "row has neither image nor video", "missing image")
                category = Path(rel).parts[0]
                if category not in self.categories:
                    raise BenchmarkDataError(
                        file,
                        i,
                        f"unknown category {category!r} from path {rel!r}; expected one of {list(self.categories)}",
                    )
                if row.get("video"):
                    images = [str(p) for p in sample_frames(file.parent / rel, self.video_frames, file, i)]
                else:
                    images = [str(resolve_image(file, i, rel, file.parent))]
                return {
                    "id": str(row["id"]),
                    "group": str(row["id"]),
                    "category": category,
                    "images": images,
                    "query": row["prompt"],
                    "response_1": row["chosen"],
                    "response_2": row["rejected"],
                    "label": 1,
                }

            with open(file, encoding="utf-8") as fh:
                items += self.convert_rows(file, [ln for ln in fh if ln.strip()], convert)
        return items

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().score(records)
        out.update(M.acc_plus(records, self.on_parse_failure, self.categories))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "video_frames": self.video_frames}
