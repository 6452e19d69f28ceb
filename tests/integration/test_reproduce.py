"""python -m egt.reproduce for real on the tiny model: a one-format protocol (2 seeds of Table 2, a
tier-2 entropy sweep, the calibration), the gates opened wide; every step runs the real CLI, then the
report, the tables with CIs and verdict.md are written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_runner import REPO

pytestmark = pytest.mark.slow

PROTOCOL = """```yaml
# egt-protocol
preset: quick
threads_per_process: 1
workers: 2
seeds: 2
seeds_tier2: 1
calibration_seeds: [100]
formats:
  answer_token: [distill.teacher.judge_each=false]
common: [eval.order=official, logger=none]
sweeps:
  - {name: table2, experiment: table2, tier: 1}
  - {name: beyond, experiment: table4, tier: 2, overrides: ["selection.seed=${rl.seed}"],
     sweep: {entropy: "answer,sentence"}}
gates: {sft_overall: [0.0, 1.0], rl_changed_min: 0.0, rl_parse_failures_max: 1.0}
stats: {alpha: 0.05, power: 0.8, margin: 2.0, rho_margin: 0.1, auroc_margin: 0.05}
timings: {sft_step: 0.2, rl_step: 1.0, eval_item: 0.03, probe_item: 0.03, job_overhead: 5, stage_overhead: 10}
```
"""


def test_one_command_regenerates_the_reproduction(tmp_path):
    (tmp_path / "protocol.md").write_text(PROTOCOL)
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "egt.reproduce",
            "--protocol",
            str(tmp_path / "protocol.md"),
            "--out",
            str(tmp_path / "out"),
            "--sweeps",
            str(tmp_path / "sw"),
            "--artifacts",
            str(tmp_path / "art"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "CPUs on this machine" in out and "total wall" in out and "G2 answer_token" in out
    verdict = (tmp_path / "out" / "verdict.md").read_text()
    assert "| answer_token | | table2:full_rl > sft | " in verdict and "| answer_token | sentence |" in verdict
    # each sweep's computed seconds, read from the end-of-run tables the real CLI wrote in its jobs' logs
    assert "| answer_token | table2 | 6 |" in verdict and "| answer_token | upstream | 1 |" in verdict
    assert "the current default stays" in verdict or "(needs the SFT judges of two formats)" in verdict
    for name in ("report.md", "table2.md", "tables_ci.md", "fig2_ci.png"):
        assert (tmp_path / "out" / "answer_token" / name).is_file(), name
    assert "| tier1 answer_token/table2 |" in (tmp_path / "out" / "timings.md").read_text()
    jobs = list((tmp_path / "sw" / "answer_token" / "table2").rglob("job.json"))
    assert len(jobs) == 6  # 3 rows x 2 seeds; the calibration sweep lives outside the tables' root
