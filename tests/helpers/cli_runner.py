"""Run the real CLI from tests: ``cli(artifacts_dir, *overrides)`` returns its output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
# eval.order=official: tests not about the evaluation order skip the default's second (swapped) view of
# every pair; those that are about it say eval.order=both
QUICK = ["experiment=quick", "eval.order=official"]


def cli(art: Path, *args: str, timeout: float = 600, popen: bool = False):
    env = {
        **os.environ,
        "EGT_ARTIFACTS": str(art),
        "EGT_LOGS": str(art / "logs"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={art}/runs/{time.time_ns()}"]
    if popen:  # output to a file: an unread pipe would block the child once full
        art.mkdir(parents=True, exist_ok=True)
        log = open(art / "popen.log", "w")
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def done(art: Path, stage: str) -> list[Path]:
    return sorted(p.parent for p in (art / stage).glob("*/_SUCCESS.json"))


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], art: Path, what: str, timeout: float = 300) -> None:
    """SIGKILL a ``cli(..., popen=True)`` run as soon as ``ready()`` holds; fail the test (with the
    run's log) if it ends first or ``what`` does not happen within ``timeout`` seconds."""
    import pytest

    t0 = time.time()
    while time.time() - t0 < timeout:
        if ready() and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed:\n" + (art / "popen.log").read_text()[-3000:])
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{what} did not happen in {timeout:.0f} s:\n" + (art / "popen.log").read_text()[-3000:])
