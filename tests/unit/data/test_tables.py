"""Reading outside tables (egt.data.tables, and through egt.data.sources.load_source): truncated files,
folders of shards, files changed in place under datasets' cache (issue 30)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from egt.data.sources import SourceRowError, load_source
from egt.data.tables import SourceFileError, load_table


def _rows(n: int, start: int = 0, image: str = "x.png") -> list[dict]:
    return [
        {"id": f"r{i}", "query": f"question {i}", "chosen": "yes", "rejected": "no", "image": image}
        for i in range(start, start + n)
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------ truncated files
def test_truncated_parquet_names_the_file(tmp_path):
    path = tmp_path / "train-00000-of-00001.parquet"
    pd.DataFrame(_rows(50)).to_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SourceFileError) as e:
        load_table(str(path))
    assert e.value.file == str(path) and str(path) in str(e.value) and "parquet" in str(e.value)


def test_truncated_jsonl_names_the_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "pairs.jsonl", _rows(5))
    text = path.read_text()
    path.write_text(text[: text.rindex('"chosen"')])  # the last line cut in the middle
    with pytest.raises(SourceFileError) as e:
        load_table(str(path))
    assert (e.value.file, e.value.line) == (str(path), 5)
    assert f"{path}: line 5" in str(e.value)


def test_truncated_json_list_names_the_file_and_line(tmp_path):
    path = tmp_path / "povid.json"
    path.write_text(json.dumps(_rows(4), indent=1))
    text = path.read_text()
    path.write_text(text[: len(text) * 2 // 3])
    with pytest.raises(SourceFileError) as e:
        load_table(str(path))
    assert e.value.file == str(path) and e.value.line is not None and f"line {e.value.line}" in str(e.value)


def test_a_truncated_shard_in_a_folder_is_named(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _rows(3))
    bad = _jsonl(tmp_path / "b.jsonl", _rows(3, 3))
    bad.write_text(bad.read_text()[:-20])
    with pytest.raises(SourceFileError) as e:
        load_table(str(tmp_path))
    assert (e.value.file, e.value.line) == (str(bad), 3)


# ------------------------------------------------------------------ folders of shards
def test_a_folder_of_shards_names_the_shard_and_its_row(tmp_path):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.png")
    data = tmp_path / "data"
    data.mkdir()
    _jsonl(data / "train-00000-of-00002.jsonl", _rows(3))
    _jsonl(data / "train-00001-of-00002.jsonl", [*_rows(1, 3), {**_rows(1, 4)[0], "image": "absent.png"}])
    spec = {"path": str(data), "name": "d"}
    with pytest.raises(SourceRowError) as e:
        load_source(spec, "sft_pool", image_root=str(tmp_path))
    assert (e.value.file, e.value.row, e.value.sample_id) == (str(data / "train-00001-of-00002.jsonl"), 1, "r4")
    ds, _ = load_source(spec, "sft_pool", on_bad_sample="skip", image_root=str(tmp_path))
    assert json.loads(ds[3]["meta"]) == {
        "file": str(data),
        "row": 3,
        "shard": "train-00001-of-00002.jsonl",
        "shard_row": 0,
    }


def test_a_repeated_id_in_a_folder_names_both_shards_and_rows(tmp_path):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.png")
    data = tmp_path / "data"
    data.mkdir()
    _jsonl(data / "a.jsonl", _rows(2))
    _jsonl(data / "b.jsonl", [_rows(1, 5)[0], {**_rows(1, 6)[0], "id": "r1"}])
    with pytest.raises(
        ValueError,
        match=rf"{data / 'b.jsonl'}: row 1: sample id 'r1' \(column 'id'\) occurs again, "
        rf"first at {data / 'a.jsonl'}: row 1",
    ):
        load_source({"path": str(data), "name": "d"}, "sft_pool", image_root=str(tmp_path))


def test_a_bad_sample_after_conversion_names_its_file_and_row(tmp_path):
    from egt.data.schema import BadSampleError, validate_dataset

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.png")
    path = _jsonl(tmp_path / "p.jsonl", _rows(2))
    ds, _ = load_source({"path": str(path)}, "sft_pool", image_root=str(tmp_path))
    broken = ds.map(lambda r, i: {"label": 3 if i == 1 else r["label"]}, with_indices=True)
    with pytest.raises(
        BadSampleError,
        match=rf"bad sample 'r1': field 'label': must be 1 or 2, got 3 "
        rf"\({path}: row 1\)",
    ):
        validate_dataset(broken)


def test_a_single_file_sources_meta_is_unchanged(tmp_path):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.png")
    path = _jsonl(tmp_path / "p.jsonl", _rows(2))
    ds, _ = load_source({"path": str(path)}, "sft_pool", image_root=str(tmp_path))
    assert ds["meta"] == [json.dumps({"file": str(path), "row": i}) for i in range(2)]  # byte for byte


# ------------------------------------------------------------------ a file changed in place
def test_a_file_rewritten_with_its_mtime_kept_gives_the_new_rows(tmp_path):
    """cp -p, rsync -a, tar x: new content, same size, old mtime; datasets keys its cache by path and mtime."""
    path = _jsonl(tmp_path / "pairs.jsonl", _rows(3))
    stat = path.stat()
    assert load_table(str(path))["query"] == ["question 0", "question 1", "question 2"]
    _jsonl(path, _rows(3, 5))  # same size: question 5, 6, 7
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_table(str(path))["query"] == ["question 5", "question 6", "question 7"]


def test_a_change_outside_the_sampled_bytes_is_seen_too(tmp_path):
    """The content fingerprint samples 3 × 64 KiB; the cache key's ctime sees any rewrite."""
    path = _jsonl(tmp_path / "big.jsonl", _rows(6000))
    assert path.stat().st_size > 4 * 65536
    stat = path.stat()
    load_table(str(path))
    text = path.read_text()
    at = text.index('"question 1500"')  # about a quarter in: none of the first, middle or last 64 KiB
    assert 65536 < at < path.stat().st_size // 2 - 32768
    path.write_text(text[:at] + '"QUESTION 1500"' + text[at + 15 :])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_table(str(path))["query"][1500] == "QUESTION 1500"
