"""egt.sweep: job.json on success and failure, override parsing, loading."""

import json

import pytest
from omegaconf import OmegaConf

from egt.sweep import JOB_FILE, load_jobs, override_value, run_job, sweep_metrics


def _cfg():
    return OmegaConf.create(
        {
            "seed": 0,
            "stages": ["data", "eval"],
            "rl": {"seed": 2},
            "selection": {"name": "entropy", "k": None, "fraction": 0.15, "percentile": None, "band": "low", "seed": 2},
            "curriculum": {"name": "ascending", "seed": 2},
            "entropy": {"name": "answer"},
            "model": {"name": "tiny"},
        }
    )


def _job(tmp_path):
    return {
        "dir": str(tmp_path),
        "mode": "MULTIRUN",
        "num": 3,
        "sweep_dir": str(tmp_path.parent),
        "overrides": ["selection.band=mid", "rl.seed=2"],
        "choices": {"selection": "entropy"},
    }


def _results(tmp_path):
    metrics = {
        "key": "ev1",
        "benchmark": {"name": "synthetic", "columns": [["overall", "Overall"]], "headline_key": "overall"},
        "model": {"label": "rl", "identity": {"stage": "rl", "key": "r1"}},
        "metrics": {"overall": 0.75},
    }
    src = tmp_path / "art" / "metrics.json"
    src.parent.mkdir()
    src.write_text(json.dumps(metrics))
    probe = tmp_path / "art" / "probe.parquet"
    probe.write_bytes(b"PAR1")
    return {
        "probe": {
            "key": "p1",
            "path": str(probe.parent),
            "reused": True,
            "summary": {"n": 4, "x": [1]},
            "table_path": str(probe),
        },
        "eval": {
            "key": "e",
            "summary": {"rl/synthetic": 0.75, "headline": 0.75},
            "results": {"rl/synthetic": {"key": "ev1", "metrics_path": str(src)}},
        },
    }


def test_completed_job_records_overrides_params_metrics_and_files(tmp_path):
    job_dir = tmp_path / "3"
    job_dir.mkdir()
    value = run_job(_cfg(), lambda: _results(tmp_path), lambda r: r["eval"]["summary"]["headline"], job=_job(job_dir))
    assert value == 0.75
    rec = json.loads((job_dir / JOB_FILE).read_text())
    assert rec["status"] == "completed" and rec["error"] is None and rec["headline"] == 0.75
    assert rec["overrides"] == ["selection.band=mid", "rl.seed=2"]
    assert rec["params"]["rl.seed"] == 2 and rec["params"]["selection.band"] == "low"  # resolved, as given
    assert rec["stages"]["probe"]["summary"] == {"n": 4}  # scalars only
    [m] = rec["metrics"]
    assert (m["model"], m["benchmark"], m["key"], m["metrics"]) == ("rl", "synthetic", "ev1", {"overall": 0.75})
    assert rec["files"] == {"probe": "probe.parquet"} and (job_dir / "probe.parquet").read_bytes() == b"PAR1"


def test_failed_job_is_recorded_and_reraised(tmp_path):
    def boom():
        raise ValueError("the selection is empty")

    with pytest.raises(ValueError, match="empty"):
        run_job(_cfg(), boom, lambda r: None, job=_job(tmp_path))
    rec = json.loads((tmp_path / JOB_FILE).read_text())
    assert rec["status"] == "failed" and rec["error"] == "ValueError: the selection is empty"
    assert "boom" in rec["traceback"] and rec["metrics"] == []
    [loaded] = load_jobs(tmp_path)
    assert loaded["_dir"] == str(tmp_path)


def test_outside_hydra_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_job(_cfg(), lambda: {}, lambda r: 1.0) == 1.0
    assert not list(tmp_path.rglob(JOB_FILE))


def test_override_value_and_sweep_metrics():
    job = {"overrides": ["+ablation=full_rl", "selection.fraction=0.5", "++rl.seed=1", "rl.seed=2"]}
    assert override_value(job, "ablation") == "full_rl"
    assert override_value(job, "selection.fraction") == "0.5"
    assert override_value(job, "rl.seed") == "2"  # the last one wins, as in Hydra
    assert override_value(job, "selection") is None
    assert sweep_metrics({"eval": {"summary": {"sft/synthetic": 0.5, "rl/synthetic": 0.7, "headline": 0.7}}}, 0.7) == {
        "eval/headline": 0.7,
        "eval/sft/synthetic": 0.5,
        "eval/rl/synthetic": 0.7,
    }
