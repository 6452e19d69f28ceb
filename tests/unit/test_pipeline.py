"""egt.pipeline: the stage list, each stage's REQUIRES, and the end-of-run table."""

import ast
import importlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import egt.stages
from egt.benchmarks import get as get_benchmark, names as benchmark_names
from egt.pipeline import Pipeline, format_summary, summary_line
from egt.stages import MODEL_STAGES, STAGES


def _requested(module) -> set[str]:
    """The stage names a module passes to ``pipe.get`` as literals."""
    tree = ast.parse(Path(module.__file__).read_text())
    return {
        call.args[0].value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "get"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "pipe"
        and call.args
        and isinstance(call.args[0], ast.Constant)
    }


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_declares_what_it_asks_for(stage):
    module = importlib.import_module(f"egt.stages.{stage}")
    assert set(module.REQUIRES) <= set(STAGES) and stage not in module.REQUIRES
    assert _requested(module) <= set(module.REQUIRES)
    assert callable(module.run)


def test_requires_is_acyclic_and_the_default_order_runs_dependencies_first():
    for i, stage in enumerate(STAGES):
        # what a stage requires comes before it in the default order (eval may name any model stage)
        assert all(STAGES.index(r) < i for r in importlib.import_module(f"egt.stages.{stage}").REQUIRES), stage
    for stage in MODEL_STAGES:
        assert stage in importlib.import_module("egt.stages.eval").REQUIRES


def test_benchmarks_read_only_stages_eval_requires():
    eval_requires = importlib.import_module("egt.stages.eval").REQUIRES
    for name in benchmark_names():
        source = get_benchmark(name).source_stage
        assert source is None or source in eval_requires, name


def _pipe(tmp_path) -> Pipeline:
    return Pipeline(OmegaConf.create({"paths": {"artifacts": str(tmp_path)}, "stages": []}))


def test_a_request_outside_requires_is_refused(tmp_path, monkeypatch):
    pipe = _pipe(tmp_path)
    monkeypatch.setattr("egt.stages.select.run", lambda cfg, p: p.get("distill"))  # not in select's REQUIRES
    with pytest.raises(RuntimeError, match=r"stage 'select' asked for 'distill', which is not in its REQUIRES"):
        pipe.get("select")
    with pytest.raises(KeyError, match="no stage 'models'"):
        pipe.get("models")


def test_a_declared_request_runs_once(tmp_path, monkeypatch):
    pipe, calls = _pipe(tmp_path), []
    monkeypatch.setattr("egt.stages.data.run", lambda cfg, p: calls.append("data") or {"key": "d", "reused": False})
    monkeypatch.setattr("egt.stages.distill.run", lambda cfg, p: {"key": p.get("data")["key"] + "+t"})
    assert pipe.get("distill")["key"] == "d+t" and pipe.get("data")["key"] == "d" and calls == ["data"]
    assert list(pipe.results) == ["data", "distill"] and "seconds" in pipe.results["data"]


def test_the_default_config_runs_every_stage_in_order():
    from egt.config import EgtConfig

    assert EgtConfig().stages == list(egt.stages.DEFAULT_STAGES) == [s for s in STAGES if s != "rft"]
    assert STAGES[0] == "model"  # rft runs only when named (UnifiedReward-Think's recipe, egt.stages.rft)


def test_every_stage_owns_its_summary_line():
    for stage in STAGES:
        line = importlib.import_module(f"egt.stages.{stage}").summary_line
        assert isinstance(line({}), str), stage  # an empty summary (outside input, skipped) gives a line too


def test_model_summary_line_and_summary_table():
    assert summary_line("model", {"name": "demo", "parameters": 2_345_678}) == "demo (built offline), 2.3M parameters"
    assert summary_line("model", {"name": "qwen", "source": "model.path"}) == "qwen (checkpoint)"
    table = format_summary(
        {"model": {"reused": True, "seconds": 0.1, "summary": {"name": "demo"}, "path": "/a/models/k"}}
    )
    assert "model    reused        0.1  demo (built offline)" in table and "model artifact: /a/models/k" in table
    job = format_summary({}, job="sweep job 12: method=egt rl.seed=0")
    assert "egt pipeline summary: what this run showed (sweep job 12: method=egt rl.seed=0)" in job
