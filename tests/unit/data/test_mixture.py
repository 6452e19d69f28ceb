"""Per-source mixture weights and counts (egt.data.mixture), and data.num_proc, on hand-worked values."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest
from PIL import Image

from egt.config import ConfigError
from egt.data.mixture import active, check, mix_pool

FIX = Path(__file__).resolve().parents[2] / "fixtures"
SIZES = {"a": 10, "b": 20, "c": 30}


def _pool() -> datasets.Dataset:
    """Sources a, b, c with 10, 20, 30 rows (ids a0…, b0…, c0…), as the data stage concatenates them."""
    ids = [f"{s}{i}" for s, n in SIZES.items() for i in range(n)]
    return datasets.Dataset.from_dict(
        {"id": ids, "source": [i[0] for i in ids], "meta": [json.dumps({"row": int(i[1:])}) for i in ids]}
    )


def _mix(mix: dict, seed: int = 0) -> tuple[datasets.Dataset, dict]:
    return mix_pool(_pool(), active({"sft_pool": mix})["sft_pool"], seed, "sft_pool", list(SIZES))


def test_weights_without_size_take_the_most_rows_no_source_repeats():
    ds, report = _mix({"weights": {"a": 1, "b": 1, "c": 2}})  # size = min(10/¼, 20/¼, 30/½) = 40
    assert Counter(ds["source"]) == {"a": 10, "b": 10, "c": 20}
    assert report == {
        "a": {"unmixed": 10, "repeated": 0},
        "b": {"unmixed": 20, "repeated": 0},
        "c": {"unmixed": 30, "repeated": 0},
    }
    assert len(set(ds["id"])) == 40 and ds["id"][:10] == [f"a{i}" for i in range(10)]  # a whole, in file order
    b = [i for i in ds["id"] if i[0] == "b"]
    assert b == sorted(b, key=lambda i: int(i[1:]))  # a sample, kept in file order
    again, _ = _mix({"weights": {"a": 1, "b": 1, "c": 2}})
    other, _ = _mix({"weights": {"a": 1, "b": 1, "c": 2}}, seed=1)
    assert again["id"] == ds["id"] and other["id"] != ds["id"]  # seeded
    fewer, _ = _mix({"counts": {"b": 6}})
    assert set(i for i in fewer["id"] if i[0] == "b") < set(b)  # a smaller draw is part of a larger one


def test_size_above_what_sources_have_repeats_whole_passes():
    ds, report = _mix({"weights": {"a": 0.2, "b": 0.3, "c": 0.5}, "size": 100})
    assert Counter(ds["source"]) == {"a": 20, "b": 30, "c": 50}
    assert {n: r["repeated"] for n, r in report.items()} == {"a": 10, "b": 10, "c": 20}
    ids = ds["id"]
    assert len(set(ids)) == 100  # copies are told apart
    assert ids[:20] == [f"a{i}" for i in range(10)] + [f"a{i}#2" for i in range(10)]  # every a row twice
    b_twice = [i for i in ids if i.startswith("b") and i.endswith("#2")]
    assert len(b_twice) == 10 and len(set(b_twice)) == 10  # 20 once + 10 of them again, none thrice
    row = ds[ids.index("a3#2")]
    assert json.loads(row["meta"]) == {"repeat": 2, "row": 3}


def test_counts_and_unnamed_sources():
    ds, _ = _mix({"counts": {"a": 25, "c": 7}})  # b is named nowhere: all its rows once
    assert Counter(ds["source"]) == {"a": 25, "b": 20, "c": 7}
    assert Counter(i.split("#")[1] if "#" in i else "1" for i in ds["id"] if i[0] == "a") == {"1": 10, "2": 10, "3": 5}
    ds, _ = _mix({"weights": {"a": 0, "b": 1, "c": 1}, "size": 10})  # 0: left out
    assert Counter(ds["source"]) == {"b": 5, "c": 5}
    ds, _ = _mix({"weights": {"a": 1, "b": 1, "c": 1}, "size": 10})  # 3⅓ each: the leftover row to the first
    assert Counter(ds["source"]) == {"a": 4, "b": 3, "c": 3}


SOURCES = {"sft_pool": [{"path": "/d/a.jsonl"}, {"path": "/d/rlaif_v.parquet"}, {"path": "/d/x", "name": "c"}]}


@pytest.mark.parametrize(
    "mix,message",
    [
        ({"sft_pool": {"weights": {"a": -1}}}, r"data\.mix\.sft_pool\.weights\.a=-1: must be a number >= 0"),
        ({"sft_pool": {"weights": {"a": 0, "c": 0}}}, r"data\.mix\.sft_pool\.weights are all 0"),
        (
            {"sft_pool": {"weights": {"rlaif": 1}}},
            r"data\.mix\.sft_pool\.weights\.rlaif: data\.sources\.sft_pool has no source named 'rlaif' "
            r"\(did you mean rlaif_v\?\); its sources: \['a', 'rlaif_v', 'c'\]",
        ),
        ({"sft_pool": {"counts": {"a": 2.5}}}, r"data\.mix\.sft_pool\.counts\.a=2\.5: must be a whole number"),
        ({"sft_pool": {"weights": {"a": "x"}}}, r"data\.mix\.sft_pool\.weights\.a='x'"),
        ({"sft_pool": {"weights": {"a": 1}, "counts": {"a": 3}}}, r"data\.mix\.sft_pool: \['a'\] has both"),
        (
            {"sft_pool": {"counts": {"a": 3}, "size": 9}},
            r"data\.mix\.sft_pool\.size=9 .* set data\.mix\.sft_pool\.weights",
        ),
        (
            {"sft_pool": {"weight": {"a": 1}}},
            r"data\.mix\.sft_pool\.weight: .*did you mean data\.mix\.sft_pool\.weights",
        ),
        ({"bench": {"weights": {"a": 1}}}, r"data\.mix\.bench: only the training pools"),
    ],
)
def test_bad_mixes_name_the_config_key(mix, message):
    with pytest.raises(ConfigError, match=message):
        check(mix, SOURCES)


def test_a_mix_needs_distinct_names_and_rows():
    twice = {"sft_pool": [{"path": "/d/data.parquet"}, {"path": "/e/data.parquet"}]}
    with pytest.raises(ConfigError, match=r"2 sources named .data."):
        check({"sft_pool": {"weights": {"data": 1}}}, twice)
    empty = _pool().filter(lambda s: s != "b", input_columns=["source"])
    with pytest.raises(ValueError, match=r"data\.mix\.sft_pool\.weights\.b=1.0: source b has no rows left"):
        mix_pool(empty, {"weights": {"a": 1.0, "b": 1.0}}, 0, "sft_pool", list(SIZES))


def _files(tmp: Path) -> str:
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp / "x.png")
    for name, n in SIZES.items():
        (tmp / f"{name}.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "id": f"{name}{i}",
                        "query": f"{name} question {i}",
                        "chosen": "yes",
                        "rejected": "no",
                        "image": "x.png",
                    }
                )
                + "\n"
                for i in range(n)
            )
        )
    return "[" + ", ".join(f"{{path: {tmp / n}.jsonl, image_root: {tmp}}}" for n in SIZES) + "]"


def test_data_stage_mixes_after_drops_counts_in_summary_and_key(tmp_path):
    from egt.data.inspect import _compose, report
    from egt.stages.data import key_config

    base = ["data=preference_files", f"data.sources.sft_pool={_files(tmp_path)}", "data.contamination_benchmarks=[]"]
    plain = key_config(_compose(base))
    assert "mix" not in plain and "num_proc" not in plain
    assert key_config(_compose([*base, "data.num_proc=2"])) == plain  # not in the key
    cfg = _compose([*base, "data.mix.sft_pool.weights={a: 0.2, b: 0.3, c: 0.5}", "data.mix.sft_pool.size=100"])
    assert key_config(cfg)["mix"] == {"sft_pool": {"weights": {"a": 0.2, "b": 0.3, "c": 0.5}, "size": 100}}
    text = report(cfg, n=0)
    assert "== sft_pool: 100 samples" in text
    assert (
        "source a: 10 rows, 10 kept, excluded none, skipped none; after duplicates and "
        "contamination 10, mixed to 20 "
        "(10 of them repeats)" in text
    )
    assert (
        "source c: 30 rows, 30 kept, excluded none, skipped none; after duplicates and "
        "contamination 30, mixed to 50 "
        "(20 of them repeats)" in text
    )


def test_num_proc_gives_the_same_rows(tmp_path):
    from egt.data.sources import load_source

    specs = [
        ({"path": str(FIX / "r1_reward_rl"), "format": "r1_reward_rl"}, str(FIX / "r1_reward_rl" / "images")),
        (
            {"path": str(FIX / "sft_sources" / "wildvision_battle.parquet"), "format": "wildvision_battle"},
            str(FIX / "sft_sources" / "images"),
        ),
    ]
    for spec, root in specs:
        one, c1 = load_source(spec, "rl_pool", "skip", root)
        two, c2 = load_source(spec, "rl_pool", "skip", root, num_proc=2)
        raw = datasets.List(datasets.Image(decode=False))
        assert c1 == c2 and one.cast_column("images", raw).to_list() == two.cast_column("images", raw).to_list()


def test_two_sources_of_one_split_with_one_name_are_a_config_error_mix_or_not():
    """Names default to the file stem (test-00000-of-00001): two such sources would share ids, and one's
    counts would overwrite the other's in the summary."""
    from egt.data.inspect import _compose
    from egt.config import validate

    twice = {"sft_pool": [{"path": "/d/test-00000-of-00001.parquet"}, {"path": "/e/test-00000-of-00001.parquet"}]}
    for mix in (None, {}, {"sft_pool": {"weights": None, "counts": {}, "size": None}}):
        with pytest.raises(
            ConfigError,
            match=r"data\.sources\.sft_pool has 2 sources named "
            r"'test-00000-of-00001'.*name:",
        ):
            check(mix, twice)
    check(
        None,
        {
            "sft_pool": [
                {"path": "/d/test-00000-of-00001.parquet", "name": "a"},
                {"path": "/e/test-00000-of-00001.parquet", "name": "b"},
            ],
            "rl_pool": [{"path": "/d/test-00000-of-00001.parquet"}],
        },
    )  # other splits: other ids
    cfg = _compose(["data=preference_files", "data.sources.sft_pool=[{path: /d/x.parquet}, {path: /e/x.parquet}]"])
    with pytest.raises(ConfigError, match="name:"):
        validate(cfg)  # before any stage starts
