"""The whole pipeline on outside preference data (data=preference_files): SFT pairs from a JSON-lines
file, the RL pool from an R1-Reward-RL-shaped parquet folder, a bench from a labelled parquet, the
distillation through the fake OpenAI-compatible teacher."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import load_from_disk

from cli_runner import QUICK, cli, done
from openai_fake import FakeOpenAI

FIX = Path(__file__).resolve().parents[1] / "fixtures"
KEY_ENV = "EGT_TEST_PREF_KEY"


def _sources() -> list[str]:
    pref, r1 = FIX / "preference_files", FIX / "r1_reward_rl"
    # the fixtures hold the same four pairs in every file: without data.deduplicate=false every SFT pair
    # would be dropped as also being in the RL pool (tests/unit/data/test_sources.py checks that rule)
    return [
        "data=preference_files",
        "data.template=r1_reward",
        "data.deduplicate=false",
        f"data.sources.sft_pool=[{{path: {pref / 'pairs.jsonl'}, name: pairs, image_root: {pref}}}]",
        f"data.sources.rl_pool=[{{path: {r1}, format: r1_reward_rl, image_root: {r1 / 'images'}}}]",
        f"data.sources.bench=[{{path: {pref / 'labelled.parquet'}, columns: {{query: question}}, category: general}}]",
    ]


def test_every_stage_on_preference_files(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    art = tmp_path / "art"
    cli(art, *QUICK, *_sources(), "stages=[data]", "logger=none")
    data = done(art, "data")[0]
    summary = json.loads((data / "_SUCCESS.json").read_text())["summary"]
    assert {s: summary[s]["n"] for s in ("sft_pool", "rl_pool", "bench")} == {"sft_pool": 4, "rl_pool": 4, "bench": 4}
    assert summary["rl_pool"]["sources"]["r1_reward_rl"] == {
        "rows": 4,
        "kept": 4,
        "excluded": {},
        "skipped": {},
        "final": 4,
        # the fixture's labels, shuffled
        "label_1": 0,
        "label_2": 4,
    }
    dsd = load_from_disk(str(data / "dataset"))
    assert sorted(dsd["rl_pool"]["query"])[0] == "Describe the image."
    samples = list(dsd["sft_pool"])
    with FakeOpenAI(samples, answer="label") as fake:
        teacher = [
            "distill/teacher=openai",
            f"distill.teacher.base_url={fake.url}",
            "distill.teacher.model=fake",
            f"distill.teacher.api_key_env={KEY_ENV}",
            "distill.teacher.seed=0",
        ]
        cli(
            art,
            *QUICK,
            *_sources(),
            *teacher,
            "logger=none",
            "sft.eval_n=0",
            "rl.eval_n=0",
            "rl.max_steps=1",
            "selection=all",
            "eval.optional_benchmarks=[]",
            "stages=[data,distill,sft,probe,select,rl,eval]",
        )
    for stage in ("distill", "sft", "probe", "select", "rl", "eval"):
        assert done(art, stage), stage
    assert len(done(art, "data")) == 1  # the data artifact was reused, not rebuilt


def test_a_changed_file_under_the_same_path_is_not_reused(tmp_path):
    src = tmp_path / "pairs.jsonl"
    rows = (FIX / "preference_files" / "pairs.jsonl").read_text().splitlines()
    src.write_text("\n".join(rows) + "\n")
    args = [
        "data=preference_files",
        "stages=[data]",
        "logger=none",
        f"data.sources.sft_pool=[{{path: {src}, image_root: {FIX / 'preference_files'}}}]",
    ]
    cli(tmp_path / "art", *QUICK, *args)
    src.write_text("\n".join(rows[:3]) + "\n")
    out = cli(tmp_path / "art", *QUICK, *args)
    assert "[data] computing artifact" in out and len(done(tmp_path / "art", "data")) == 2


def test_a_training_row_that_is_a_benchmark_item_is_found_and_dropped(tmp_path):
    import io

    from PIL import Image

    # a VL-RewardBench (R1-Reward's jsonl layout) whose one item is pairs.jsonl's row 0: its image
    # re-encoded as JPEG at another size, its question in other case and spacing
    root = tmp_path / "benchmarks" / "vl_rewardbench"
    (root / "img").mkdir(parents=True)
    src = Image.open(FIX / "preference_files" / "img" / "p0.png").convert("RGB")
    buf = io.BytesIO()
    src.resize((64, 64)).save(buf, format="JPEG", quality=80)
    (root / "img" / "x.jpg").write_bytes(buf.getvalue())
    item = {
        "id": "hallucination_pair-1",
        "prompt": "  WHAT colour is   the square ",
        "chosen": "Red.",
        "rejected": "Green.",
        "image": "img/x.jpg",
        "chosen_reason": "",
        "rejected_reason": "",
    }
    (root / "data.jsonl").write_text(json.dumps(item) + "\n")
    args = [
        "data=preference_files",
        "stages=[data]",
        "logger=none",
        f"eval.data_root={tmp_path / 'benchmarks'}",
        f"data.sources.sft_pool=[{{path: {FIX / 'preference_files' / 'pairs.jsonl'}, name: pairs, "
        f"image_root: {FIX / 'preference_files'}}}]",
    ]
    cli(tmp_path / "art", *QUICK, *args)
    summary = json.loads((done(tmp_path / "art", "data")[0] / "_SUCCESS.json").read_text())["summary"]
    found = summary["contamination"]["sft_pool"]
    assert found["overlap"] == {"vl_rewardbench": {"pairs": 1}} and found["dropped"] == 1
    assert found["examples"] == [{"id": "pair-0", "benchmark": "vl_rewardbench", "item": "hallucination_pair-1"}]
    assert summary["sft_pool"]["n"] == 3  # dropped
    status = summary["contamination"]["benchmarks"]
    assert status["vl_rewardbench"]["items"] == 1 and status["mm_rlhf_rewardbench"].startswith("not checked")
    kept = cli(tmp_path / "art2", *QUICK, *args, "data.decontaminate=false")
    assert "are benchmark items" in kept
    summary = json.loads((done(tmp_path / "art2", "data")[0] / "_SUCCESS.json").read_text())["summary"]
    assert summary["sft_pool"]["n"] == 4 and summary["contamination"]["sft_pool"]["rows"] == 1


def test_the_readme_r1_reward_rl_command_runs_every_stage(tmp_path):
    # python train.py data=r1_reward_rl data.path=… sft.model_path=/ckpt/sft (README): R1-Reward-RL is an RL
    # pool only, so the data set's sft_pool and bench are empty (issue 30: the probe died with IndexError)
    r1, art = FIX / "r1_reward_rl", tmp_path / "art"
    cli(art, *QUICK, "stages=[model]", "logger=none")
    sft = done(art, "models")[0] / "model"
    out = cli(
        art,
        *QUICK,
        "logger=none",
        "data=r1_reward_rl",
        f"data.path={r1}",
        f"data.image_root={r1 / 'images'}",
        f"sft.model_path={sft}",
        "rl.max_steps=1",
        "eval.optional_benchmarks=[]",
    )
    job = json.loads(sorted((art / "runs").glob("*/job.json"))[-1].read_text())
    assert job["status"] == "completed", out[-3000:]
    stages = job["stages"]
    assert stages["distill"]["key"] is None and stages["model"]["key"] is None  # skipped: SFT is the outside model
    assert "distill  skipped" in out and "sft.model_path is set" in out
    assert stages["data"]["summary"] == {"sft_pool_n": 0, "rl_pool_n": 4, "bench_n": 0}
    assert stages["probe"]["summary"]["n"] == 4 and stages["rl"]["summary"]["steps"] == 1
    assert "bench_accuracy" not in stages["rl"]["summary"]  # no accuracy of an empty bench
    assert job.get("headline") is None and not done(art, "distill")
    assert "synthetic: the data set has no bench split" in out
