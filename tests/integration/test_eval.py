"""The eval stage through the real CLI on the tiny model: synthetic bench in the pipeline, public
benchmark formats with an outside model dir, reuse, and the report from the run dir."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench_samples import public_benchmarks
from cli_runner import QUICK, REPO, cli, done


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return tmp_path_factory.mktemp("eval-artifacts")


@pytest.fixture(scope="module")
def pipeline_run(art):
    return cli(art, *QUICK, "stages=[data,distill,sft,eval]")


def test_pipeline_eval_writes_metrics_for_the_synthetic_bench(pipeline_run, art):
    (ev,) = done(art, "eval")
    m = json.loads((ev / "metrics.json").read_text())
    assert m["benchmark"]["name"] == "synthetic" and m["benchmark"]["version"] >= 1
    assert m["benchmark"]["fingerprint"].startswith("data:") and m["model"]["label"] == "sft"
    assert m["eval_config"]["order"] == "official" and m["eval_config"]["max_new_tokens"] == 48
    metrics = m["metrics"]
    assert metrics["n"] == 32 and 0.0 <= metrics["overall"] <= 1.0 and "parse_failures" in metrics
    assert {"category/general", "category/hallucination", "category/reasoning", "strict/overall"} <= set(metrics)
    assert len((ev / "journal.jsonl").read_text().splitlines()) == 32
    copies = list((art / "runs").glob("*/eval/sft/synthetic/metrics.json"))
    assert len(copies) == 1 and "sft/synthetic" in pipeline_run


def test_second_eval_is_reused_and_report_builds(pipeline_run, art, tmp_path):
    out = cli(art, *QUICK, "stages=[eval]")
    assert "[eval] reusing finished artifact" in out and "[sft] reusing" in out
    run_dir = sorted((art / "runs").iterdir())[0]
    proc = subprocess.run(
        [sys.executable, "-m", "egt.report", str(run_dir), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    t1 = (tmp_path / "table1.md").read_text()
    assert "| Model | Synthetic | Avg. | Avg. Gain |" in t1 and "| sft |" in t1
    assert "\\begin{tabular}" in (tmp_path / "synthetic_categories.tex").read_text()


def test_outside_model_on_public_formats_in_both_orders(pipeline_run, art, tmp_path):
    data_root = public_benchmarks(tmp_path / "benchmarks")
    model = done(art, "sft")[0] / "model"
    cli(
        art,
        *QUICK,
        "stages=[eval]",
        f"eval.model_path={model}",
        "eval.model_label=tiny-sft",
        "eval.benchmarks=[vl_rewardbench,multimodal_rewardbench,mm_rlhf_rewardbench]",
        f"eval.data_root={data_root}",
        "eval.order=both",
        "eval.max_new_tokens=16",
    )
    loaded = [json.loads((p / "metrics.json").read_text()) for p in done(art, "eval")]
    results = {m["benchmark"]["name"]: m for m in loaded}
    assert {"vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench"} <= set(results)
    mm = results["mm_rlhf_rewardbench"]
    assert mm["model"]["label"] == "tiny-sft" and mm["metrics"]["groups"] == 2 and "acc_plus" in mm["metrics"]
    assert "order/position_consistency" in mm["metrics"] and mm["run"]["views"] == 6
    assert {"order/debiased/overall", "order/debiased/acc_plus", "order/first_minus_second"} <= set(mm["metrics"])
    assert results["vl_rewardbench"]["metrics"]["headline"] == results["vl_rewardbench"]["metrics"]["macro"]
    assert "area/vqa" in results["multimodal_rewardbench"]["metrics"]


def test_an_outside_model_retrained_in_place_is_evaluated_again(pipeline_run, art, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(done(art, "sft")[0] / "model", model)
    args = [*QUICK, "stages=[eval]", f"eval.model_path={model}", "eval.limit=4", "eval.max_new_tokens=8"]
    cli(art, *args)
    assert "[eval] reusing" in cli(art, *args)  # the same weights: reused
    weights = load_file(model / "model.safetensors")
    save_file(
        {k: (v + 0.01 if v.is_floating_point() else v) for k, v in weights.items()},
        model / "model.safetensors",
        metadata={"format": "pt"},
    )  # "retrained" into the same path
    assert "[eval] computing artifact" in cli(art, *args)
