"""model.attn_implementation=egt_varlen and model.liger through the real CLI on the tiny model, on CPU:
egt_varlen falls back to sdpa with one line saying why (torch's varlen kernel is CUDA-only) and trains
as sdpa; model.liger=true stops before any stage with what to
install or write. The kernels themselves run in the gpu tests and benchmarks/gpu_check.sh."""

from __future__ import annotations

import json
import os

import pytest

from cli_runner import QUICK, cli, done, train_py
from egt.models.liger import liger_version

FOUNDATION = [*QUICK, "stages=[data,distill,sft]", "data.world.n_sft=16", "sft.eval_n=0"]


def test_egt_varlen_on_cpu_is_sdpa_with_one_line(tmp_path):
    out = cli(tmp_path, *FOUNDATION, "model.attn_implementation=egt_varlen")
    lines = [ln for ln in out.splitlines() if "egt_varlen" in ln and "using sdpa" in ln]
    assert lines and all("CUDA-only" in ln for ln in lines), out[-3000:]
    assert "model.attn_implementation=egt_varlen: the device is cpu" in out  # validation says it first
    (sft,) = done(tmp_path, "sft")
    assert json.loads((sft / "_SUCCESS.json").read_text())


def test_liger_without_the_package_stops_before_any_stage(tmp_path):
    if liger_version() is not None:
        pytest.skip("liger-kernel is installed here")
    env = {**os.environ, "EGT_ARTIFACTS": str(tmp_path), "EGT_LOGS": str(tmp_path / "logs"), "HF_HUB_OFFLINE": "1"}
    proc = train_py([*FOUNDATION, "model.liger=true", f"hydra.run.dir={tmp_path}/run"], env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "model.liger=true needs the liger-kernel package: pip install egt[liger]" in out, out[-2000:]
    assert "model.liger=false" in out and not (tmp_path / "sft").exists()
