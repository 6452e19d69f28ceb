"""Benchmark folders for tests: the real benchmark rows of tests/fixtures/benchmark_rows (gzipped
jsonl; source and license in tests/fixtures/README.md) with placeholder images for the paths its rows
name, and hand-made three-row folders of each public format (public_benchmarks)."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "fixtures" / "benchmark_rows"


def png_bytes(colour: str = "red", size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def samples_text(name: str) -> str:
    """The text of ``tests/fixtures/benchmark_rows/<name>.gz``, byte for byte the released file."""
    return gzip.decompress((SAMPLES / f"{name}.gz").read_bytes()).decode("utf-8")


def vl_rewardbench_dir(tmp: Path) -> Path:
    """R1-Reward's VL-RewardBench jsonl + a placeholder PNG at every image path."""
    text = samples_text("vl_rewardbench.r1reward.jsonl")
    root = tmp / "vl_rewardbench"
    root.mkdir(parents=True)
    (root / "data.jsonl").write_text(text, encoding="utf-8")
    data = png_bytes()
    for line in text.splitlines():
        p = root / json.loads(line)["image"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def mm_rlhf_dir(tmp: Path, frames: int = 10) -> Path:
    """MM-RLHF-RewardBench jsonl + placeholder images, and ``frames`` frames per video folder."""
    text = samples_text("mm_rlhf_rewardbench.jsonl")
    root = tmp / "mm_rlhf_rewardbench"
    root.mkdir(parents=True)
    (root / "mm_reward_bench.jsonl").write_text(text, encoding="utf-8")
    data = png_bytes()
    for line in text.splitlines():
        row = json.loads(line)
        if row.get("image"):
            p = root / row["image"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        else:
            folder = root / row["video"]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(frames):
                (folder / f"frame_{i:04d}.jpg").write_bytes(data)
    return root


def public_benchmarks(root: Path) -> Path:
    """Three-row hand-made versions of each public format under ``<root>/<name>/``.

    VL-RewardBench (R1-Reward's jsonl, chosen stored first): RLHF-V-1 (hallucination), mmmu_2
    (reasoning), wildvision-battle_3 (general); eval.seed=0 shows the first two swapped.
    Multimodal RewardBench: the better response is Output1, Output2, Output1 (stored order is shown).
    MM-RLHF-RewardBench: group g1 (two mcq pairs) and g2 (one video pair of 5 frames), chosen shown first.
    """
    green = png_bytes("green", 16)
    vl = root / "vl_rewardbench"
    (vl / "img").mkdir(parents=True)
    rows = [
        {"id": i, "prompt": "What is shown?", "chosen": "A square.", "rejected": "A cat.", "image": f"img/{n}.png"}
        for n, i in enumerate(["RLHF-V-1", "mmmu_2", "wildvision-battle_3"])
    ]
    for n in range(3):
        (vl / "img" / f"{n}.png").write_bytes(green)
    (vl / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mm = root / "multimodal_rewardbench"
    (mm / "images").mkdir(parents=True)
    (mm / "images" / "a.png").write_bytes(green)
    (mm / "all_data.json").write_text(
        json.dumps(
            [
                {
                    "ID": f"{p}_{k}",
                    "Text": "Describe.",
                    "Image": "images/a.png",
                    "Output1": first,
                    "Output2": second,
                    "Better": better,
                    "Category": c,
                }
                for k, (p, c, first, second, better) in enumerate(
                    [
                        ("mathvista", "reasoning", "A square.", "A dog.", "Output1"),
                        ("PAIRS", "safety", "A dog.", "A square.", "Output2"),
                        ("vqa", "vqa", "A square.", "A dog.", "Output1"),
                    ]
                )
            ]
        )
    )
    rl = root / "mm_rlhf_rewardbench"
    for d in ("mcq", "video/clip1"):
        (rl / d).mkdir(parents=True)
    (rl / "mcq" / "q.png").write_bytes(green)
    for f in range(5):
        (rl / "video" / "clip1" / f"{f:03d}.jpg").write_bytes(green)
    (rl / "mm_reward_bench.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "g1", "image": "mcq/q.png", "prompt": "Which?", "chosen": "B", "rejected": "C"},
                {"id": "g1", "image": "mcq/q.png", "prompt": "Which?", "chosen": "B", "rejected": "D"},
                {"id": "g2", "video": "video/clip1", "prompt": "What happens?", "chosen": "x", "rejected": "y"},
            ]
        )
    )
    return root
