"""benchmarks/gpu_check.sh in its CPU smoke mode (``SMOKE=1``): the prepared device check's parts run to the end
on this machine at tiny shapes, through the same benchmark scripts and flags a device session would call, so a
renamed flag or a broken code path shows here and not in a device session's few minutes. The figures measure
nothing; the test looks at exit codes and at the records each part writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_runs_one_part_of_each_benchmark_script(tmp_path):
    # python3 on PATH must be this interpreter (the script calls python3, as the device image has it)
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path), "PARTS": "sftprofile decode sharedgrad"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    bin_python3 = Path(sys.executable).parent / "python3"
    if not bin_python3.exists():
        pytest.skip(f"no python3 beside {sys.executable}")
    out = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    ).stdout
    assert "sftprofile sgd: rc=0" in out and "decode: rc=0" in out and "sharedprompt packed: rc=0" in out, out[-3000:]

    (sft,) = [json.loads(ln) for ln in (tmp_path / "sftprofile_sgd.log").read_text().splitlines() if ln[:1] == "{"]
    assert sft["device"] == "cpu" and sft["shape"] == "tiny"  # the smoke's arguments overrode the part's
    assert set(sft["sft_profile"]) >= {"vision_fwd_s", "language_fwd_s", "loss_s", "backward_s", "optimizer_s"}

    decode = [json.loads(ln) for ln in (tmp_path / "decode.jsonl").read_text().splitlines()]
    assert [r["mode"] for r in decode] == ["dynamic", "static", "compiled"]
    assert all(r["same_tokens"] for r in decode)

    grad = [json.loads(ln) for ln in (tmp_path / "sharedprompt_packed.log").read_text().splitlines() if ln[:1] == "{"]
    assert [r["variant"] for r in grad] == ["after", "packed", "packing", "packing_varlen"]
    assert grad[-1]["kernel"] == "reference"  # egt_varlen's CPU stand-in for torch's varlen kernel
    # the four layouts compute the same sum of log-probs (fp32: to rounding, summed over ~100 tokens)
    assert [r["checksum"] for r in grad] == pytest.approx([grad[0]["checksum"]] * 4, rel=1e-5)
