"""Outside preference data (egt.data.sources) on the committed fixtures, laid out as the releases are."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
from PIL import Image

from egt.data.prompt import build_user_text
from egt.data.formats.r1_reward_rl import parse_r1_reward_prompt, r1_reward_label
from egt.data.sources import SourceRowError, fingerprint, load_source

FIX = Path(__file__).resolve().parents[2] / "fixtures"
R1 = FIX / "r1_reward_rl"
PREF = FIX / "preference_files"


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (28, 28), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_r1_reward_rl_rows_recovered_field_by_field():
    ds, counts = load_source(
        {"path": str(R1), "format": "r1_reward_rl", "name": "r1_reward_rl"}, "rl_pool", image_root=str(R1 / "images")
    )
    assert counts == {"rows": 4, "kept": 4, "excluded": {}, "skipped": {}} and len(ds) == 4
    row = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))[1]
    assert row["id"] == "r1_reward_rl-rl_pool-00000001" and row["source"] == "r1_reward_rl"
    assert row["query"] == "How many circles are there?"
    assert row["response_1"] == "There are three circles."
    assert row["response_2"] == "There are two circles, one\nbehind the other."  # inner newline kept
    assert row["label"] == 2 and row["category"] == "r1_reward_rl"
    assert row["images"][0]["bytes"] == _png((30, 160, 60))  # from the base64 image column
    assert json.loads(row["meta"]) == {
        "file": str(R1),
        "row": 1,  # a folder: its shard and the row there too
        "shard": "data/train-00000-of-00001.parquet",
        "shard_row": 1,
    }
    third = ds[2]  # no image column value: the message's path, its file name under image_root
    assert third["images"][0].size == (28, 28) and third["images"][0].getpixel((0, 0)) == (40, 60, 200)


def test_r1_reward_rl_without_image_root_names_the_missing_file():
    with pytest.raises(SourceRowError) as e:
        load_source({"path": str(R1), "format": "r1_reward_rl"}, "rl_pool")
    msg = str(e.value)
    assert str(R1) in msg and "row 2" in msg and "field 'images'" in msg and "missing image" in msg
    assert "image_2.png" in msg and "data.on_bad_sample=skip" in msg


def test_parse_inverts_egts_r1_reward_template_and_refuses_ambiguity():
    q, a, b = "What is shown?  ", "A cat.\n\nIt sleeps.", "A dog #1 [Response]"
    assert parse_r1_reward_prompt(build_user_text(q, a, b, template="r1_reward")) == (q.strip(), a, b)
    quoting = build_user_text("q", "I think\n###### [Response 2]:\nis wrong", "b", template="r1_reward")
    with pytest.raises(ValueError, match=r"\[Response 2\] occurs 2 times"):
        parse_r1_reward_prompt(quoting)
    with pytest.raises(ValueError, match="occurs 0 times"):
        parse_r1_reward_prompt("no markers at all")
    assert r1_reward_label(["<answer>1</answer>", "<answer>1</answer>"]) == 1
    assert r1_reward_label(["<answer>1</answer>", "<answer>2</answer>"]) is None


def test_pairs_jsonl_and_labelled_parquet():
    ds, counts = load_source({"path": str(PREF / "pairs.jsonl"), "name": "pairs"}, "sft_pool", image_root=str(PREF))
    assert counts["kept"] == 4 and set(ds["label"]) == {1}  # chosen is shown first (randomised later)
    assert ds[1]["id"] == "pair-1" and ds[1]["response_1"] == "There are two circles, one\nbehind the other."
    assert ds[1]["category"] == "demo" and ds[0]["images"][0].getpixel((0, 0)) == (200, 30, 40)
    lab, _ = load_source({"path": str(PREF / "labelled.parquet"), "columns": {"query": "question"}}, "bench")
    assert lab["label"] == [1, 2, 1, 1] and lab[1]["query"] == "How many circles are there?"
    assert lab[0]["id"] == "labelled-bench-00000000" and lab[3]["images"][0].getpixel((0, 0)) == (220, 200, 40)


def _bad_rows(tmp_path: Path) -> Path:
    (tmp_path / "ok.png").write_bytes(_png((1, 2, 3)))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    rows = [
        {"id": "a", "query": "q", "chosen": "x", "rejected": "y", "image": "ok.png"},
        {"id": "b", "query": "q", "chosen": "x", "rejected": "y", "image": "absent.png"},  # missing image
        {"id": "c", "query": "q", "chosen": "x", "rejected": "y", "image": "broken.png"},  # unreadable image
        {"id": "d", "query": "q", "chosen": "  \n", "rejected": "y", "image": "ok.png"},  # empty response
        {"id": "e", "query": "q", "chosen": "same  text", "rejected": "same text", "image": "ok.png"},  # identical
        {"id": "f", "query": "q", "response_1": "x", "response_2": "y", "label": "3", "image": "ok.png"},  # label
        {"id": "g", "query": "q", "chosen": "x", "rejected": "y"},  # no image column value
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_bad_row_kind_errors_with_file_row_id_field_or_is_counted(tmp_path):
    path = _bad_rows(tmp_path)
    with pytest.raises(SourceRowError) as e:
        load_source({"path": str(path)}, "sft_pool", image_root=str(tmp_path))
    assert (e.value.file, e.value.row, e.value.sample_id, e.value.field) == (str(path), 1, "b", "images")
    ds, counts = load_source({"path": str(path)}, "sft_pool", on_bad_sample="skip", image_root=str(tmp_path))
    assert ds["id"] == ["a"]
    assert counts["skipped"] == {
        "missing image": 2,
        "unreadable image": 1,
        "empty response": 1,
        "identical responses": 1,
        "label not derivable": 1,
    }
    with pytest.raises(SourceRowError, match="missing column"):
        load_source({"path": str(path), "columns": {"query": "prompt"}}, "sft_pool", image_root=str(tmp_path))


def test_unparsable_r1_reward_prompt_is_its_own_reason(tmp_path):
    df = pd.read_parquet(R1 / "data" / "train-00000-of-00001.parquet")
    msg = json.loads(df.loc[0, "message"])
    msg[0]["content"][0]["text"] = "Which is better? No markers here."
    df.loc[0, "message"] = json.dumps(msg)
    df.loc[1, "answer"] = ["<answer>7</answer>"]
    df.to_parquet(tmp_path / "train.parquet")
    ds, counts = load_source(
        {"path": str(tmp_path / "train.parquet"), "format": "r1_reward_rl"},
        "rl_pool",
        on_bad_sample="skip",
        image_root=str(R1 / "images"),
    )
    assert counts["skipped"] == {"unparsable R1-Reward prompt": 1, "label not derivable": 1} and len(ds) == 2


def test_fingerprint_follows_content_not_path(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n')
    before = fingerprint(str(f))
    f.write_text('{"a": 2}\n')  # same name, same size
    assert fingerprint(str(f)) != before
    images = tmp_path / "img"
    images.mkdir()
    with_root = fingerprint(str(f), str(images))
    (images / "x.png").write_bytes(b"1")
    assert fingerprint(str(f), str(images)) != with_root


def test_inspect_reports_counts_reasons_and_rendered_samples(tmp_path):
    from egt.data.inspect import _compose, report

    bad = _bad_rows(tmp_path)
    cfg = _compose(
        [
            "data=preference_files",
            f"data.sources.sft_pool=[{{path: {bad}, name: bad, image_root: {tmp_path}}}]",
            f"data.sources.rl_pool=[{{path: {R1}, format: r1_reward_rl, image_root: {R1 / 'images'}}}]",
        ]
    )
    text = report(cfg, n=1)
    assert "== sft_pool: 1 samples" in text and "on_bad_sample=error: the first bad row would stop a run" in text
    assert (
        "source bad: 7 rows, 1 kept, excluded none, skipped empty response: 1, identical responses: 1, "
        "label not derivable: 1, missing image: 2, unreadable image: 1"
    ) in text
    assert "source r1_reward_rl: 4 rows, 4 kept, excluded none, skipped none" in text
    assert "###### [Question]:\nWhat colour is the square?  \n" in text and "images 28×28" in text
    assert "vl_rewardbench: not checked" in text and "sft_pool: 0 samples are benchmark items" in text


def test_inspect_command_checks_the_data_alone_and_a_mistake_is_one_line(tmp_path, capsys):
    from egt.data.inspect import main

    pairs = FIX / "preference_files"
    main(["data=preference_files", f"data.sources.sft_pool=[{{path: {pairs / 'pairs.jsonl'}, image_root: {pairs}}}]"])
    assert "== sft_pool: 4 samples" in capsys.readouterr().out  # no teacher needed: it runs no distill stage
    with pytest.raises(SystemExit) as e:
        main(["data=r1_reward_rl", f"data.path={tmp_path / 'missing'}", "n=1"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith(f"egt: data.path={tmp_path / 'missing'} does not exist")
    assert "Traceback" not in err and len(err.splitlines()) == 2  # the message, then how to see the traceback


def test_benchmark_index_matches_reencoded_images_not_other_pictures():
    from egt.data.decontam import BenchmarkIndex

    picture = Image.radial_gradient("L").resize((96, 64)).convert("RGB")
    other = Image.linear_gradient("L").rotate(90).convert("RGB")
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    index = BenchmarkIndex()
    index.add("vl_rewardbench", [{"id": "b1", "query": "Describe this image.", "images": [buf.getvalue()]}])
    jpeg = io.BytesIO()
    picture.resize((150, 100)).save(jpeg, format="JPEG", quality=70)
    assert index.matches("  describe THIS image ", Image.open(jpeg)) == [("vl_rewardbench", "b1")]
    assert index.matches("Describe this image.", other) == []  # same question, another picture
    assert index.matches("What is this?", picture) == []  # same picture, another question


# ------------------------------------------------------------------ the paper's SFT sources
SFT = FIX / "sft_sources"
RED = (200, 30, 40)


def _near(pixel, colour, tol: int = 3) -> bool:  # the JPEG fixtures decode to within a few levels
    return all(abs(p - c) <= tol for p, c in zip(pixel, colour))


@pytest.mark.parametrize(
    "fmt,file,kept,excluded,first",
    [
        ("rlaif_v", "rlaif_v.parquet", 2, {}, ("What colour is the square?", "The square is red.", 1)),
        ("rlhf_v", "rlhf_v.parquet", 2, {}, ("What colour is the square?", "The square is red.", 1)),
        ("povid", "povid.json", 2, {}, ("What colour is the square?", "The square is red.", 1)),
        # winner model_b → label 2; "tie" and "tie (bothbad)" dropped under "tie"
        (
            "wildvision_battle",
            "wildvision_battle.parquet",
            2,
            {"tie": 2},
            ("What colour is the square?", "The square is red.", 2),
        ),
        # ratings averaged: m2 (5, 5, 5) best, m3 (1, 4, 1) worst, m4's "N/A" left out; v1's completions tie
        (
            "vlfeedback",
            "vlfeedback.jsonl",
            1,
            {"no rated pair": 1},
            ("What colour is the square?", "The square is red.", 1),
        ),
        (
            "mm_rlhf",
            "mm_rlhf_dpo_pairs.jsonl",
            2,
            {"video only": 1},
            ("What colour is the square?", "The square is red.", 1),
        ),
    ],
)
def test_sft_source_formats(fmt, file, kept, excluded, first):
    ds, counts = load_source({"path": str(SFT / file), "format": fmt}, "sft_pool", image_root=str(SFT / "images"))
    assert counts["kept"] == kept and counts["excluded"] == excluded and counts["skipped"] == {}
    row = ds[0]
    assert (row["query"], row["response_1"], row["label"]) == first
    assert _near(row["images"][0].getpixel((0, 0)), RED) and row["source"] == Path(file).stem
    assert len(set(ds["id"])) == len(ds)  # egt's ids, never the release's (they repeat)


def test_povid_image_as_file_name_or_with_the_readme_folder_prefix():
    ds, _ = load_source(
        {"path": str(SFT / "povid.json"), "format": "povid"}, "sft_pool", image_root=str(SFT / "images")
    )
    # row 1's image is "./data/coco/COCO_train2014_000000000025.jpg": found by its file name under image_root
    assert _near(ds[1]["images"][0].getpixel((0, 0)), (30, 160, 60))
    assert json.loads(ds[1]["meta"])["source_id"] == "COCO_train2014_000000000025"
    assert ds[1]["id"] == "povid-sft_pool-00000001"


def test_mm_rlhf_repeated_instruction_ids_become_distinct_sample_ids():
    ds, _ = load_source(
        {"path": str(SFT / "mm_rlhf_dpo_pairs.jsonl"), "format": "mm_rlhf", "name": "mm_rlhf"},
        "sft_pool",
        on_bad_sample="skip",
        image_root=str(SFT / "images"),
    )
    assert ds["id"] == ["mm_rlhf-sft_pool-00000000", "mm_rlhf-sft_pool-00000001"]
    assert {json.loads(m)["source_id"] for m in ds["meta"]} == {"073712_6205145"}
    with pytest.raises(
        ValueError,
        match=r"mm_rlhf_dpo_pairs.jsonl: row 1: sample id '073712_6205145' \(column 'id'\) "
        r"occurs again, "
        r"first at .*mm_rlhf_dpo_pairs.jsonl: row 0",
    ):  # mapped on purpose
        load_source(
            {"path": str(SFT / "mm_rlhf_dpo_pairs.jsonl"), "format": "mm_rlhf", "columns": {"id": "id"}},
            "sft_pool",
            on_bad_sample="skip",
            image_root=str(SFT / "images"),
        )


def test_vlfeedback_pair_is_best_against_worst():
    ds, _ = load_source(
        {"path": str(SFT / "vlfeedback.jsonl"), "format": "vlfeedback"},
        "sft_pool",
        on_bad_sample="skip",
        image_root=str(SFT / "images"),
    )
    assert ds[0]["response_2"] == "The square is green."  # m3, mean 2.0 (m1 has 3.33)


def test_vlfeedback_as_its_loading_script_gives_it(tmp_path):
    """MMInstruction/VLFeedback through its loading script: img_path set (merged_images/<id>.jpg) and
    completions a Sequence of dicts, which datasets returns as a dict of lists."""
    rows = [json.loads(line) for line in (SFT / "vlfeedback.jsonl").read_text().splitlines()]
    for r in rows:
        r["img_path"] = str(SFT / "images" / f"{r['id']}.jpg")
        r["completions"] = {k: [c[k] for c in r["completions"]] for k in ("annotations", "model", "response")}
    rating = {"Rating": datasets.Value("string"), "Rationale": datasets.Value("string")}
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            "models": datasets.Sequence(datasets.Value("string")),
            "completions": datasets.Sequence(
                {
                    "annotations": {
                        n: rating for n in ("Helpfulness", "Ethical Considerations", "Visual Faithfulness")
                    },
                    "model": datasets.Value("string"),
                    "response": datasets.Value("string"),
                }
            ),
            "img_path": datasets.Value("string"),
        }
    )
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "vlf"))
    assert isinstance(datasets.load_from_disk(str(tmp_path / "vlf"))[0]["completions"], dict)
    ds, counts = load_source(
        {"path": str(tmp_path / "vlf"), "format": "vlfeedback"}, "sft_pool", on_bad_sample="skip"
    )  # no image_root: img_path is absolute
    assert counts["kept"] == 1 and ds[0]["response_2"] == "The square is green."
    assert _near(ds[0]["images"][0].getpixel((0, 0)), RED)


def test_wildvision_battle_without_a_turn_column_counts_user_turns(tmp_path):
    df = pd.read_parquet(SFT / "wildvision_battle.parquet").drop(columns=["turn"])
    conv = list(df.loc[3, "conversation_a"])
    df.at[3, "conversation_a"] = conv + [
        {"role": "user", "content": "And now?"},
        {"role": "assistant", "content": "Still red."},
    ]
    df.to_parquet(tmp_path / "battle.parquet")
    ds, counts = load_source(
        {"path": str(tmp_path / "battle.parquet"), "format": "wildvision_battle"}, "sft_pool", on_bad_sample="skip"
    )
    assert counts["excluded"] == {"tie": 2, "multi-turn": 1} and len(ds) == 1


def test_r1_reward_rl_image_as_data_uri_and_text_only_message(tmp_path):
    """Variants of the release's string columns: the image as a data URI, a message whose content is
    the prompt text alone (OpenAI style), a question column with LLaVA's <image> placeholder."""
    df = pd.read_parquet(R1 / "data" / "train-00000-of-00001.parquet")
    df.loc[0, "image"] = "data:image/png;base64," + df.loc[0, "image"]
    msg = json.loads(df.loc[1, "message"])
    msg[0]["content"] = msg[0]["content"][0]["text"]
    df.loc[1, "message"] = json.dumps(msg)
    df.loc[1, "question"] = "<image>\n" + df.loc[1, "question"]
    df.iloc[:2].to_parquet(tmp_path / "train.parquet")
    ds, counts = load_source({"path": str(tmp_path / "train.parquet"), "format": "r1_reward_rl"}, "rl_pool")
    assert counts["kept"] == 2 and ds[1]["query"] == "How many circles are there?"
    assert ds.cast_column("images", datasets.List(datasets.Image(decode=False)))[0]["images"][0]["bytes"] == _png(RED)


def test_duplicates_inside_and_across_pools(tmp_path):
    from egt.data.decontam import deduplicate

    rows = [json.loads(line) for line in (PREF / "pairs.jsonl").read_text().splitlines()]
    swapped = {
        **rows[0],
        "id": "again",
        "chosen": rows[0]["rejected"],
        "rejected": rows[0]["chosen"],
        "query": rows[0]["query"].upper() + "  ",
    }  # the same pair, other order, case and spacing
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, swapped]))
    (tmp_path / "rl.jsonl").write_text(json.dumps({**rows[2], "id": "rl-copy"}) + "\n")
    sft, _ = load_source({"path": str(tmp_path / "sft.jsonl"), "name": "sft"}, "sft_pool", image_root=str(PREF))
    rl, _ = load_source({"path": str(tmp_path / "rl.jsonl"), "name": "rl"}, "rl_pool", image_root=str(PREF))
    splits, report = deduplicate({"sft_pool": sft, "rl_pool": rl, "bench": rl})
    assert report == {"inside": {"sft_pool": {"sft": 1}, "rl_pool": {}}, "across": {"sft_pool": {"sft": 1}}}
    assert splits["sft_pool"]["id"] == ["pair-0", "pair-1", "pair-3"] and splits["rl_pool"]["id"] == ["rl-copy"]


# ------------------------------------------------------------------ real-release quirks (issue 30)
def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_vlfeedback_without_a_prompt_column_is_a_missing_column(tmp_path):
    rows = [json.loads(line) for line in (SFT / "vlfeedback.jsonl").read_text().splitlines()]
    path = _jsonl(tmp_path / "vlf.jsonl", [{k: v for k, v in r.items() if k != "prompt"} for r in rows])
    with pytest.raises(SourceRowError) as e:
        load_source({"path": str(path), "format": "vlfeedback"}, "sft_pool", image_root=str(SFT / "images"))
    assert (e.value.field, e.value.reason, e.value.row) == ("prompt", "missing column", 0)
    assert e.value.sample_id == "svit-conversation-1219"  # the error names the release's id
    assert "'prompt'" in str(e.value)


def _battle(content_a, content_b, winner="model_a", qid="q0") -> dict:
    def conv(content):
        return [{"role": "user", "content": content[0]}, {"role": "assistant", "content": content[1]}]

    return {
        "question_id": qid,
        "winner": winner,
        "turn": 1,
        "image": "red.jpg",
        "conversation_a": conv(content_a),
        "conversation_b": conv(content_b),
    }


def test_wildvision_turn_content_as_a_list_of_parts_is_its_text(tmp_path):
    """The newer arena export: each turn's content a list of {type: text | image} parts."""

    def parts(*texts):
        return [{"type": "text", "text": t} for t in texts]

    q = [{"type": "image", "text": None}, *parts("What colour ", "is the square?")]
    path = _jsonl(tmp_path / "b.jsonl", [_battle((q, parts("The square is red.")), (q, parts("It is green.")))])
    Image.new("RGB", (28, 28), RED).save(tmp_path / "red.jpg")
    ds, _ = load_source({"path": str(path), "format": "wildvision_battle"}, "sft_pool", image_root=str(tmp_path))
    assert (ds[0]["query"], ds[0]["response_1"], ds[0]["response_2"]) == (
        "What colour is the square?",
        "The square is red.",
        "It is green.",
    )


def test_wildvision_turn_content_neither_text_nor_parts_is_a_bad_row(tmp_path):
    path = _jsonl(tmp_path / "b.jsonl", [_battle(("What colour?", {"answer": "red"}), ("What colour?", "Green."))])
    Image.new("RGB", (28, 28), RED).save(tmp_path / "red.jpg")
    with pytest.raises(SourceRowError) as e:
        load_source({"path": str(path), "format": "wildvision_battle"}, "sft_pool", image_root=str(tmp_path))
    assert (e.value.row, e.value.sample_id, e.value.field) == (0, "q0", "conversation_a")
    assert "content" in str(e.value) and "dict" in str(e.value)


def _noise_png(size: int = 256) -> bytes:  # incompressible: its base64 is ~size² · 4 bytes (> any path limit)
    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("image_root", [False, True])
def test_long_base64_and_data_uri_images_are_decoded_before_any_path_check(tmp_path, image_root):
    """R1-Reward-RL's ~165 kB image strings: never tried as a path (OSError: File name too long)."""
    import base64

    png = _noise_png()
    b64 = base64.b64encode(png).decode()
    assert len(b64) > 200_000
    df = pd.read_parquet(R1 / "data" / "train-00000-of-00001.parquet").iloc[:2]
    df.loc[0, "image"], df.loc[1, "image"] = b64, "data:image/png;base64," + b64
    df.to_parquet(tmp_path / "train.parquet")
    ds, counts = load_source(
        {"path": str(tmp_path / "train.parquet"), "format": "r1_reward_rl"},
        "rl_pool",
        image_root=str(tmp_path) if image_root else None,
    )
    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    assert counts["kept"] == 2 and [r["images"][0]["bytes"] for r in raw] == [png, png]
    assert [r["images"][0]["path"] for r in raw] == [None, None]  # an inline image has no path


@pytest.mark.parametrize(
    "value,reason",
    [
        ("data:image/png;base64," + "A" * 5000, "unreadable image"),  # a data URI whose bytes are no image
        ("x-" * 3000 + ".png", "missing image"),  # no path (ENAMETOOLONG), no base64
        ("data:text/plain;base64,aGVsbG8=" + "A" * 5000, "unreadable image"),  # a data URI, not an image
    ],
)
def test_a_bad_image_string_is_a_bad_row_and_its_message_is_short(tmp_path, value, reason):
    path = _jsonl(tmp_path / "p.jsonl", [{"id": "a", "query": "q", "chosen": "x", "rejected": "y", "image": value}])
    for root in (None, str(tmp_path)):
        with pytest.raises(SourceRowError) as e:
            load_source({"path": str(path)}, "sft_pool", image_root=root)
        assert (e.value.row, e.value.sample_id, e.value.field, e.value.reason) == (0, "a", "images", reason)
        assert len(str(e.value)) < 600 and value[:20] in str(e.value)


@pytest.mark.parametrize(
    "fmt,file,kept,excluded",
    [
        ("wildvision_battle", "wildvision_battle.parquet", 2, {"tie": 2}),  # "tie" and "tie (bothbad)"
        ("vlfeedback", "vlfeedback.jsonl", 1, {"no rated pair": 1}),
        ("mm_rlhf", "mm_rlhf_dpo_pairs.jsonl", 2, {"video only": 1}),
    ],
)
@pytest.mark.parametrize("on_bad_sample", ["error", "skip"])
def test_by_design_exclusions_are_dropped_and_counted_whatever_on_bad_sample(fmt, file, kept, excluded, on_bad_sample):
    """Ties, prompts without a rated pair, video rows: not broken rows, so a default run loads the release."""
    ds, counts = load_source(
        {"path": str(SFT / file), "format": fmt},
        "sft_pool",
        on_bad_sample=on_bad_sample,
        image_root=str(SFT / "images"),
    )
    assert counts["kept"] == len(ds) == kept and counts["excluded"] == excluded and counts["skipped"] == {}


def test_exclusions_and_bad_rows_are_counted_apart(tmp_path):
    df = pd.read_parquet(SFT / "wildvision_battle.parquet").drop(columns=["turn"])
    conv = list(df.loc[3, "conversation_a"])
    df.at[3, "conversation_a"] = conv + [
        {"role": "user", "content": "And now?"},
        {"role": "assistant", "content": "Still red."},
    ]  # multi-turn: excluded
    df.loc[0, "winner"] = "model_c"  # a broken row
    df.to_parquet(tmp_path / "battle.parquet")
    spec = {"path": str(tmp_path / "battle.parquet"), "format": "wildvision_battle"}
    with pytest.raises(SourceRowError, match="label not derivable"):
        load_source(spec, "sft_pool")
    ds, counts = load_source(spec, "sft_pool", on_bad_sample="skip")
    assert (
        counts == {"rows": 4, "kept": 0, "excluded": {"tie": 2, "multi-turn": 1}, "skipped": {"label not derivable": 1}}
        and len(ds) == 0
    )


def test_a_default_run_counts_exclusions_per_source_and_inspect_shows_them_apart(tmp_path):
    from egt.data.inspect import _compose, report
    from egt.data.assemble import build

    bad = _bad_rows(tmp_path)
    sft = (
        f"data.sources.sft_pool=[{{path: {SFT / 'wildvision_battle.parquet'}, format: wildvision_battle}}, "
        f"{{path: {SFT / 'mm_rlhf_dpo_pairs.jsonl'}, format: mm_rlhf, image_root: {SFT / 'images'}}}]"
    )
    cfg = _compose(["data=preference_files", sft, "data.deduplicate=false"])
    assert cfg.data.on_bad_sample == "error"
    _, counts = build(cfg)  # the data stage's per-source counts (its summary's "sources")
    assert counts["sft_pool"]["wildvision_battle"]["excluded"] == {"tie": 2}
    assert counts["sft_pool"]["mm_rlhf_dpo_pairs"]["excluded"] == {"video only": 1}
    assert counts["sft_pool"]["mm_rlhf_dpo_pairs"]["skipped"] == {}
    cfg = _compose(
        [
            "data=preference_files",
            sft,
            "data.deduplicate=false",
            f"data.sources.rl_pool=[{{path: {bad}, name: bad, image_root: {tmp_path}}}]",
        ]
    )
    text = report(cfg, n=0)
    assert "source wildvision_battle: 4 rows, 2 kept, excluded tie: 2, skipped none;" in text
    assert "source bad: 7 rows, 1 kept, excluded none, skipped empty response: 1," in text


def test_vlfeedback_without_completions_is_a_missing_column_not_an_exclusion(tmp_path):
    rows = [json.loads(line) for line in (SFT / "vlfeedback.jsonl").read_text().splitlines()]
    path = _jsonl(tmp_path / "vlf.jsonl", [{k: v for k, v in r.items() if k != "completions"} for r in rows])
    with pytest.raises(SourceRowError) as e:
        load_source({"path": str(path), "format": "vlfeedback"}, "sft_pool", image_root=str(SFT / "images"))
    assert (e.value.field, e.value.reason) == ("completions", "missing column")


def test_formats_are_found_by_name_and_an_outside_one_by_target(tmp_path):
    from egt.data.formats import names
    from egt.data.sources import data_format
    from egt.errors import ConfigError

    assert names() == [
        "mm_rlhf",
        "pairs",
        "povid",
        "r1_reward_rl",
        "rlaif_v",
        "rlhf_v",
        "vlfeedback",
        "wildvision_battle",
    ]
    assert data_format({"path": "x"}).name == "pairs" and data_format({"format": "povid"}).release_id == "id"
    assert data_format({"format": {"name": "vlfeedback", "pair_rule": "best_worst"}}).pair_rule == "best_worst"
    assert data_format({"format": {"_target_": "egt.data.formats.rlaif_v.RLAIFV"}}).name == "rlaif_v"
    with pytest.raises(
        ConfigError,
        match=r"data.sources.sft_pool\[0\].format: unknown DataFormat 'rlaifv'.*"
        r"Did you mean 'rlaif_v'",
    ):
        data_format({"format": "rlaifv"}, "sft_pool[0]")
    with pytest.raises(ConfigError, match="format: {name: vlfeedback, pair_rule: best_worst}"):
        data_format({"format": "vlfeedback", "pair_rule": "best_worst"})
