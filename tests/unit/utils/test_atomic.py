"""egt.utils.atomic: whole or not at all, for files and directories, and temporaries the artifact
store recognises as debris."""

import json
import os

import pytest
from datasets import Dataset, DatasetDict, Features, Value, load_from_disk

from egt.artifacts import remove_debris
from egt.utils.atomic import (
    atomic_path,
    copy_file_atomic,
    load_saved_dataset,
    save_dataset_atomic,
    temp_sibling,
    write_json_atomic,
)


def test_a_directory_is_replaced_whole_or_kept(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("killed mid-save")
    assert (target / "weights.bin").read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["model"]
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "other.bin").write_bytes(b"new")
    assert sorted(os.listdir(target)) == ["other.bin"]  # the old directory went whole


def test_helpers_write_what_they_are_given(tmp_path):
    write_json_atomic(tmp_path / "a" / "s.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a" / "s.json").read_text()) == {"a": [1, 2], "b": 1}
    copy_file_atomic(tmp_path / "a" / "s.json", tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_text() == (tmp_path / "a" / "s.json").read_text()
    save_dataset_atomic(Dataset.from_dict({"x": []}), tmp_path / "empty")  # one shard, so it loads back
    assert len(load_from_disk(str(tmp_path / "empty"))) == 0


def test_a_dataset_dict_with_an_empty_split_loads_back(tmp_path):
    # data=r1_reward_rl: an RL pool, no SFT pool, no bench (issue 30: the probe died with IndexError)
    features = Features({"id": Value("string"), "label": Value("int8")})
    dsd = DatasetDict(
        {
            "sft_pool": Dataset.from_dict({"id": [], "label": []}, features=features),
            "rl_pool": Dataset.from_dict({"id": ["a", "b"], "label": [1, 2]}, features=features),
        }
    )
    save_dataset_atomic(dsd, tmp_path / "dataset")
    back = load_from_disk(str(tmp_path / "dataset"))
    assert {k: len(v) for k, v in back.items()} == {"sft_pool": 0, "rl_pool": 2}
    assert back["sft_pool"].features == features and back["rl_pool"]["id"] == ["a", "b"]


def test_an_empty_split_saved_without_an_arrow_file_is_read_back_empty(tmp_path):
    # what egt wrote before the fix (save_to_disk's default sharding): the split has no data file
    features = Features({"id": Value("string"), "label": Value("int8")})
    DatasetDict(
        {
            "bench": Dataset.from_dict({"id": [], "label": []}, features=features),
            "rl_pool": Dataset.from_dict({"id": ["a"], "label": [2]}, features=features),
        }
    ).save_to_disk(str(tmp_path / "old"))
    assert json.loads((tmp_path / "old" / "bench" / "state.json").read_text())["_data_files"] == []
    back = load_saved_dataset(tmp_path / "old")
    assert len(back["bench"]) == 0 and back["bench"].features == features and back["rl_pool"]["label"] == [2]
    assert load_saved_dataset(tmp_path / "old")["rl_pool"]["id"] == ["a"]


def test_a_killed_writers_temporary_is_debris_to_the_store(tmp_path):
    name = temp_sibling(tmp_path / "probe.parquet").name
    assert name.startswith(".probe.parquet.tmp-") and str(os.getpid()) in name
    dead = tmp_path / ".probe.parquet.tmp-999999999-0123abcd"  # no such process
    dead.write_bytes(b"torn")
    (tmp_path / ".model.tmp-999999999-89abcdef").mkdir()
    removed = {p.name for p in remove_debris(tmp_path)}
    assert removed == {dead.name, ".model.tmp-999999999-89abcdef"}
