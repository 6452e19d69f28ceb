"""Run the real CLI under torchrun from tests: ``torchrun(artifacts_dir, *overrides, nproc=2)``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_runner import REPO, done

# small and fast: no bench generation after SFT/RL, no optional public benchmarks
SMALL = ["logger=none", "probe.shard_size=16", "sft.eval_n=0", "rl.eval_n=0", "eval.optional_benchmarks=[]"]


def torchrun(art: Path, *args: str, nproc: int = 2, timeout: float = 600, popen: bool = False, env=None):
    """Run to the end and return the output; with ``popen`` return the running launcher (its output in
    ``art/popen.log``). ``env``: variables to add."""
    env = {
        **os.environ,
        **(env or {}),
        "EGT_ARTIFACTS": str(art),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "train.py",
        *args,
        f"hydra.run.dir={art}/runs/{time.time_ns()}",
    ]
    if popen:
        art.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(art / "popen.log", "w"), stderr=subprocess.STDOUT)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def success(path: Path) -> dict:
    """The summary in a finished artifact's _SUCCESS.json."""
    return json.loads((Path(path) / "_SUCCESS.json").read_text())["summary"]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun's workers: it starts them in their own sessions)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def kill_at_checkpoint(proc: subprocess.Popen, art: Path, stage: str, timeout: float = 300) -> str:
    """``kill -9`` a ``torchrun(..., popen=True)`` launcher and its workers as soon as ``stage`` has a
    ``checkpoints/last.ckpt`` under ``art``; fail if the run ends first or none appears within ``timeout``
    seconds; the stage must then be unfinished. Returns what the run printed."""
    t0 = time.time()
    while not list((art / stage).glob("*/checkpoints/last.ckpt")):
        assert proc.poll() is None, (art / "popen.log").read_text()[-3000:]
        assert time.time() - t0 < timeout, f"no {stage} checkpoint appeared"
        time.sleep(0.05)
    for pid in _children(proc.pid) + [proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not done(art, stage)
    return (art / "popen.log").read_text()
