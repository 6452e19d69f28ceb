"""Loaders on the real rows of tests/fixtures/benchmark_rows (placeholder images) and hand-made files."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from bench_samples import mm_rlhf_dir, png_bytes, vl_rewardbench_dir
from PIL import Image

from egt.benchmarks import BenchmarkDataError, get, names, open_images
from egt.benchmarks.mm_rlhf_rewardbench import MMRLHFRewardBench
from egt.benchmarks.multimodal_rewardbench import MultimodalRewardBench
from egt.benchmarks.vl_rewardbench import VLRewardBench


def test_builtin_names_and_versions():
    from egt.errors import ConfigError

    assert names() == ["mm_rlhf_rewardbench", "multimodal_rewardbench", "synthetic", "vl_rewardbench"]
    assert all(get(n).version >= 1 and get(n).name == n for n in names())
    with pytest.raises(ConfigError, match="Did you mean 'vl_rewardbench'"):
        get("vl_rewardbenc")


# -- VL-RewardBench ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vl_root(tmp_path_factory):
    return vl_rewardbench_dir(tmp_path_factory.mktemp("vl"))


def test_vl_rewardbench_r1_reward_jsonl_categories(vl_root):
    bench = VLRewardBench()
    items = bench.load(str(vl_root.parent))
    assert len(items) == 1250
    assert Counter(i["category"] for i in items) == {"general": 183, "hallucination": 749, "reasoning": 318}
    assert len({i["id"] for i in items}) == 1250  # 25 repeated source ids made unique
    assert all(i["label"] == 1 for i in items)  # chosen stored first; shown order is swapped per item
    first = items[0]
    assert first["id"] == "hallucination_pair-1003" and first["images"][0].endswith("vl_reward/img/image_0.jpg")


def test_vl_rewardbench_seeded_swap_is_balanced_and_reproducible(vl_root):
    bench = VLRewardBench()
    items = bench.load(str(vl_root.parent))
    shown = [bench.present(i, seed=0)["label"] for i in items]
    assert shown == [bench.present(i, seed=0)["label"] for i in items]
    assert 550 < shown.count(2) < 700
    assert shown != [bench.present(i, seed=1)["label"] for i in items]
    swapped = next(bench.present(i, 0) for i in items if bench.present(i, 0)["label"] == 2)
    orig = next(i for i in items if i["id"] == swapped["id"])
    assert swapped["response_2"] == orig["response_1"] and swapped["response_1"] == orig["response_2"]


def test_vl_rewardbench_fingerprint_tracks_the_data_file(vl_root):
    a, b = VLRewardBench(), VLRewardBench(limit=10)
    a.load(str(vl_root.parent)), b.load(str(vl_root.parent))
    assert a.fingerprint() == a.fingerprint() and a.fingerprint() != b.fingerprint()


def test_vl_rewardbench_official_parquet(tmp_path):
    root = tmp_path / "vl_rewardbench" / "data"
    root.mkdir(parents=True)
    rows = [
        {"id": "RLHF-V-1", "query": "q1", "response": ["good", "bad"], "human_ranking": [0, 1]},
        {"id": "mmmu_7", "query": "q2", "response": ["bad", "good"], "human_ranking": [1, 0]},
        {"id": "wildvision-battle_2", "query": "q3", "response": ["a", "b"], "human_ranking": [0, 1]},
    ]
    for r in rows:
        r["image"] = {"bytes": png_bytes("blue"), "path": None}
    pd.DataFrame(rows).to_parquet(root / "test-00000-of-00001.parquet")
    items = VLRewardBench().load(str(tmp_path))
    assert [(i["id"], i["category"], i["label"]) for i in items] == [
        ("RLHF-V-1", "hallucination", 1),
        ("mmmu_7", "reasoning", 2),
        ("wildvision-battle_2", "general", 1),
    ]
    assert items[1]["response_2"] == "good"
    (img,) = open_images(items[0])
    assert isinstance(img, Image.Image) and img.getpixel((0, 0)) == (0, 0, 255)


def test_vl_rewardbench_missing_image_names_file_and_row(tmp_path):
    root = tmp_path / "vl_rewardbench"
    root.mkdir()
    good = {"id": "mmmu_1", "prompt": "q", "chosen": "a", "rejected": "b", "image": "img/1.png"}
    (root / "img").mkdir()
    (root / "img" / "1.png").write_bytes(png_bytes())
    bad = {**good, "id": "mmmu_2", "image": "img/missing.png"}
    (root / "data.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(BenchmarkDataError, match=r"data\.jsonl, row 1: missing image file 'img/missing\.png'"):
        VLRewardBench().load(str(tmp_path))
    bench = VLRewardBench(on_bad_sample="skip")
    assert [i["id"] for i in bench.load(str(tmp_path))] == ["mmmu_1"]
    assert sum(bench.skipped.values()) == 1


def test_missing_benchmark_dir_says_where(tmp_path):
    with pytest.raises(BenchmarkDataError, match=r"vl_rewardbench.*does not exist.*VL-RewardBench"):
        VLRewardBench().load(str(tmp_path))


# -- MM-RLHF-RewardBench -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mm_root(tmp_path_factory):
    return mm_rlhf_dir(tmp_path_factory.mktemp("mm"), frames=40)


def test_mm_rlhf_categories_groups_and_video_frames(mm_root):
    bench = MMRLHFRewardBench()
    items = bench.load(str(mm_root.parent))
    assert len(items) == 170 and len({i["group"] for i in items}) == 46
    assert Counter(i["category"] for i in items) == {"mcq": 42, "long": 37, "short": 34, "safety": 32, "video": 25}
    assert all(i["label"] == 1 and bench.present(i, 0)["label"] == 1 for i in items)  # chosen first
    video = next(i for i in items if i["category"] == "video")
    assert len(video["images"]) == 32  # 32 of 40 frames, uniformly: first and last included
    assert video["images"][0].endswith("frame_0000.jpg") and video["images"][-1].endswith("frame_0039.jpg")
    few = MMRLHFRewardBench(video_frames=4).load(str(mm_root.parent))
    v4 = next(i for i in few if i["category"] == "video")
    assert [p[-8:-4] for p in v4["images"]] == ["0000", "0013", "0026", "0039"]


def _jsonl_bench(root, file: str, image: str, rows: list[dict]) -> None:
    """A benchmark folder: one PNG at ``image`` and ``rows`` as JSON lines in ``file``."""
    (root / image).parent.mkdir(parents=True)
    (root / image).write_bytes(png_bytes())
    (root / file).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_mm_rlhf_unknown_category_and_missing_video(tmp_path):
    _jsonl_bench(
        tmp_path / "mm_rlhf_rewardbench",
        "b.jsonl",
        "mcq/a.png",
        [
            {"id": "1", "image": "mcq/a.png", "prompt": "p", "chosen": "c", "rejected": "r"},
            {"id": "2", "image": "charts/b.png", "prompt": "p", "chosen": "c", "rejected": "r"},
            {"id": "3", "video": "video/none", "prompt": "p", "chosen": "c", "rejected": "r"},
        ],
    )
    with pytest.raises(BenchmarkDataError, match=r"b\.jsonl, row 1: unknown category 'charts'"):
        MMRLHFRewardBench().load(str(tmp_path))
    bench = MMRLHFRewardBench(on_bad_sample="skip")
    assert [i["id"] for i in bench.load(str(tmp_path))] == ["1"]
    assert sum(bench.skipped.values()) == 2


# -- Multimodal RewardBench --------------------------------------------------------------------------------
def _mmrb(tmp_path, extra=()):
    root = tmp_path / "multimodal_rewardbench"
    (root / "images" / "x").mkdir(parents=True)
    rows = []
    for i, (cat, id_, better) in enumerate(
        [
            ("open_generation/correctness_task", "nocaps_1", "Output1"),
            ("open_generation/preference_task", "vb_2", "Output2"),
            ("knowledge", "mmmu-pro_3", "Output1"),
            ("reasoning", "mathvista_4", "Output2"),
            ("reasoning", "EMMA-Coding_5", "Output1"),
            ("safety", "PAIRS_6", "Output2"),
            ("safety", "hateful_7", "Output1"),
            ("vqa", "realworldqa_8", "Output1"),
            *extra,
        ]
    ):
        (root / "images" / "x" / f"{i}.png").write_bytes(png_bytes())
        rows.append(
            {
                "ID": id_,
                "Text": f"q{i}",
                "Image": f"images/x/{i}.png",
                "Output1": "o1",
                "Output2": "o2",
                "Better": better,
                "Category": cat,
            }
        )
    (root / "all_data.json").write_text(json.dumps(rows))
    return root


def test_multimodal_rewardbench_categories_split_by_id(tmp_path):
    _mmrb(tmp_path)
    items = MultimodalRewardBench().load(str(tmp_path))
    assert [i["category"] for i in items] == [
        "correctness",
        "preference",
        "knowledge",
        "reasoning/math",
        "reasoning/coding",
        "safety/bias",
        "safety/toxicity",
        "vqa",
    ]
    assert [i["label"] for i in items] == [1, 2, 1, 2, 1, 2, 1, 1]
    assert MultimodalRewardBench().present(items[1], 0)["label"] == 2  # fixed order


def test_multimodal_rewardbench_unknown_category(tmp_path):
    _mmrb(tmp_path, extra=[("charts", "c_9", "Output1")])
    with pytest.raises(BenchmarkDataError, match=r"all_data\.json, row 8: unknown category 'charts'"):
        MultimodalRewardBench().load(str(tmp_path))


def test_empty_responses_are_never_scored_and_skips_group_by_kind(tmp_path):
    _jsonl_bench(
        tmp_path / "vl_rewardbench",
        "data.jsonl",
        "img/a.png",
        [
            {"id": "RLHF-V-1", "prompt": "Q?", "chosen": "A square.", "rejected": "A cat.", "image": "img/a.png"},
            {"id": "RLHF-V-2", "prompt": "Q?", "chosen": "", "rejected": "A cat.", "image": "img/a.png"},
            {"id": "RLHF-V-3", "prompt": "Q?", "chosen": "A dog.", "rejected": "  \n", "image": "img/a.png"},
            {"id": "other-4", "prompt": "Q?", "chosen": "x", "rejected": "y", "image": "img/missing.png"},
        ],
    )
    with pytest.raises(BenchmarkDataError, match=r"row 1: item 'RLHF-V-2': response_1 is empty"):
        VLRewardBench().load(str(tmp_path))
    bench = VLRewardBench(on_bad_sample="skip")
    items = bench.load(str(tmp_path))
    assert [i["id"] for i in items][:1] == ["RLHF-V-1"] and bench.skipped["empty response"] == 2
    assert bench.skipped["missing image"] == 1  # grouped by kind, not by the row's own message


def test_identical_responses_and_empty_queries_are_bad_rows(tmp_path):
    _jsonl_bench(
        tmp_path / "vl_rewardbench",
        "data.jsonl",
        "img/a.png",
        [
            {"id": "RLHF-V-1", "prompt": "Q?", "chosen": "A square.", "rejected": "A cat.", "image": "img/a.png"},
            {"id": "RLHF-V-2", "prompt": "Q?", "chosen": "A cat. ", "rejected": "A cat.", "image": "img/a.png"},
            {"id": "RLHF-V-3", "prompt": " ", "chosen": "A dog.", "rejected": "A cat.", "image": "img/a.png"},
        ],
    )
    with pytest.raises(
        BenchmarkDataError,
        match=r"row 1: item 'RLHF-V-2': response_1 and response_2 are identical "
        r"\(eval.on_bad_sample=skip skips such rows, counted as "
        r"'identical responses'\)",
    ):
        VLRewardBench().load(str(tmp_path))
    bench = VLRewardBench(on_bad_sample="skip")
    assert [i["id"] for i in bench.load(str(tmp_path))] == ["RLHF-V-1"]
    assert dict(bench.skipped) == {"identical responses": 1, "empty query": 1}
