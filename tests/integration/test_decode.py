"""probe.generation.decode / eval.generation.decode through the real CLI on the tiny model: a static-cache run
writes the probe table and eval predictions of the default (dynamic) run, under keys of its own."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cli_runner import QUICK, cli, done

SMALL = [*QUICK, "logger=none", "probe.limit=16", "probe.max_new_tokens=24", "eval.limit=8"]


@pytest.mark.slow
def test_static_decode_writes_the_dynamic_runs_tables(tmp_path):
    cli(tmp_path, *SMALL, "stages=[data,distill,sft,probe,eval]")
    out = cli(
        tmp_path, *SMALL, "stages=[probe,eval]", "probe.generation.decode=static", "eval.generation.decode=static"
    )
    assert "[sft] reusing" in out and "[probe] computing artifact" in out  # its own probe key
    dynamic, static = done(tmp_path, "probe")[0], done(tmp_path, "probe")[1]
    cfgs = [json.loads((d / "_SUCCESS.json").read_text()) for d in (dynamic, static)]
    if "decode" in json.dumps(cfgs[0]):  # order the two artifacts by their config, not by key
        dynamic, static = static, dynamic
    a, b = pd.read_parquet(dynamic / "probe.parquet"), pd.read_parquet(static / "probe.parquet")
    assert len(a) == 16 and a["output"].tolist() == b["output"].tolist()
    assert a["gen_lengths"].map(list).tolist() == b["gen_lengths"].map(list).tolist()
    for col in ("answer_entropy", "sentence_entropy"):  # fp32 rounding (tests/unit/eval/test_decode.py)
        assert b[col].tolist() == pytest.approx(a[col].tolist(), abs=1e-5, nan_ok=True)
    evals = done(tmp_path, "eval")
    assert len(evals) == 2
    preds = [sorted((e / "predictions.jsonl").read_text().splitlines()) for e in evals]
    assert preds[0] == preds[1]  # the same outputs, parsed and scored the same
