"""SFT at scale: time to first step and peak RSS with the Arrow encoding cache, without a cache, and
(with --baseline REV) with the in-memory cache of an older commit, on N synthetic samples (outside the tests).

    python benchmarks/bench_sft.py --samples 12000 100000 --baseline a8731a2 [--repeats 1] [--workdir DIR]

Per size it builds once, untimed: the synthetic world's data artifact with N SFT samples, one
trajectory per sample (``distill.trajectories_path``) and the tiny model. Then every measured run is a
fresh ``python train.py experiment=quick stages=[data,distill,sft] sft.max_steps=1 sft.val_fraction=0``
with the SFT artifacts removed first (data, trajectories and the encoding cache stay the same), so
the SFT stage's seconds are its time to the end of step 1 (model load, join, encoding or cache, one
step, a tiny model saved). Peak RSS is the whole process's (``wait4``), alternating modes per repeat:
  old          the baseline commit, run from ``git archive REV`` (its in-memory cache: every encoding held)
  nocache      sft.cache_encodings=false: a check pass encodes every sample, then encoding at every step
  arrow-build  sft.cache_encodings=true with no cache yet: the build (removed first, every repeat)
  arrow-reuse  sft.cache_encodings=true, the cache already built: it is memory-mapped
  check-build, check-reuse   the same with sft.cache_tensors=false: the cache holds each sample's check
               only, samples are encoded at every step (what real pixel budgets need)
Prints one JSON line per run, then a table of medians with ratios to the baseline (or to nocache).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABELS = {
    "old": "in-memory cache ({rev})",
    "nocache": "no cache",
    "arrow-build": "Arrow cache, first run (builds)",
    "arrow-reuse": "Arrow cache, reused",
    "check-build": "check-only cache, first run",
    "check-reuse": "check-only cache, reused",
}
# the pipeline summary's "<stage> computed|reused <seconds>" and the store's "[<stage>] ... artifact <path>"
STAGE_LINE = re.compile(r"^(\w+)\s+(computed|reused)\s+([\d.]+)", re.M)
ARTIFACT_LINE = re.compile(r"\[(\w+)\] (?:computing|reusing finished) artifact (\S+)")


def child_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EGT_ARTIFACTS": str(work / "artifacts"),
        "EGT_LOGS": str(work / "logs"),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": str(work / "hf_cache"),
    }


def train(tree: Path, work: Path, args: list[str]) -> dict:
    """Run ``train.py`` in ``tree``; its stages' seconds and paths, wall seconds and peak RSS (MB)."""
    log = work / "logs" / f"run-{time.time_ns()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "train.py",
        "experiment=quick",
        "logger=none",
        "sft.eval_n=0",
        *args,
        f"hydra.run.dir={work}/runs/{time.time_ns()}",
    ]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tree, env=child_env(work), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    text = log.read_text()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) in {tree}:\n{text[-3000:]}")
    paths = dict(ARTIFACT_LINE.findall(text))
    stages = {m[0]: {"seconds": float(m[2]), "path": paths.get(m[0]), "state": m[1]} for m in STAGE_LINE.findall(text)}
    return {
        "stages": stages,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "log": str(log),
    }


def prepare(tree: Path, work: Path, n: int) -> Path:
    """The data artifact (N samples), the tiny model, and a trajectory per sample; their path."""
    from datasets import Dataset, load_from_disk

    stages = train(tree, work, ["stages=[data]", f"data.world.n_sft={n}"])["stages"]
    traj = work / f"trajectories-{n}"
    if not traj.exists():
        pool = load_from_disk(Path(stages["data"]["path"]) / "dataset")["sft_pool"]
        ids, labels = pool["id"], pool["label"]
        targets = [
            f"<think>Looking at the image, response {lab} describes it{' correctly' * (1 + i % 3)}."
            f"</think><answer>{lab}</answer>"
            for i, lab in enumerate(labels)
        ]
        Dataset.from_dict({"id": list(ids), "target": targets, "attempts": [1] * len(ids)}).save_to_disk(str(traj))
    # the model is built inside the sft stage: build it here, on a tiny run, so no measured run pays for it
    train(
        tree, work, ["stages=[data,distill,sft]", "sft.max_steps=1", "sft.val_fraction=0", "sft.cache_encodings=false"]
    )
    return traj


def measure(tree: Path, work: Path, n: int, traj: Path, mode: str, seed: int) -> dict:
    args = [
        "stages=[data,distill,sft]",
        f"data.world.n_sft={n}",
        f"distill.trajectories_path={traj}",
        "sft.max_steps=1",
        "sft.val_fraction=0",
        f"seed={seed}",
    ]
    if mode == "nocache":
        args.append("sft.cache_encodings=false")
    if mode.startswith("check"):
        args.append("sft.cache_tensors=false")
    shutil.rmtree(work / "artifacts" / "sft", ignore_errors=True)  # SFT itself is never reused
    if mode.endswith("-build"):  # the caches of this kind (and unfinished ones) go
        for d in (work / "artifacts" / "sft_encodings").glob("*/"):
            done = d / "_SUCCESS.json"
            if not done.exists() or json.loads(done.read_text())["config"]["tensors"] == mode.startswith("arrow"):
                shutil.rmtree(d)
    r = train(tree, work, args)
    sft = r["stages"]["sft"]
    summary = json.loads((Path(sft["path"]) / "_SUCCESS.json").read_text())["summary"]
    out = {
        "samples": n,
        "mode": mode,
        "to_first_step_s": sft["seconds"],
        "peak_rss_mb": r["peak_rss_mb"],
        "wall_s": r["wall_seconds"],
        "seconds_to_first_step": summary.get("seconds_to_first_step"),
        "n_train": summary.get("n_train"),
        "log": r["log"],
    }
    for done in (work / "artifacts" / "sft_encodings").glob("*/_SUCCESS.json"):
        record = json.loads(done.read_text())
        if mode.startswith(("arrow", "check")) and record["config"]["tensors"] == mode.startswith("arrow"):
            out["cache_mb"] = record["summary"]["megabytes"]
    return out


def table(results: list[dict], modes: list[str], rev: str | None) -> str:
    base = "old" if "old" in modes else "nocache"
    reused = [m for m in ("arrow-reuse", "check-reuse") if m in modes and m != base]
    heads = [LABELS[m].format(rev=rev) for m in modes] + [
        f"{LABELS[m]} / {LABELS[base].format(rev=rev)}" for m in reused
    ]
    lines = ["| samples | metric | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for n in sorted({r["samples"] for r in results}):
        for key, name in (("to_first_step_s", "time to first step (s)"), ("peak_rss_mb", "peak RSS (MB)")):
            med = {
                m: statistics.median(r[key] for r in results if r["samples"] == n and r["mode"] == m)
                for m in modes
                if any(r["samples"] == n and r["mode"] == m for r in results)
            }
            cells = [
                ("–" if m not in med else f"{med[m]:,.1f}" if key.endswith("_s") else f"{med[m]:,.0f}") for m in modes
            ]
            cells += [f"{med[m] / med[base]:.2f}×" if m in med and base in med else "–" for m in reused]
            lines.append(f"| {n:,} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, nargs="+", default=[12_000, 100_000])
    ap.add_argument(
        "--modes",
        nargs="+",
        choices=list(LABELS),
        default=["old", "nocache", "arrow-build", "arrow-reuse", "check-build", "check-reuse"],
    )
    ap.add_argument("--baseline", help="git revision whose in-memory cache is the 'old' mode (e.g. a8731a2)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workdir", help="keep artifacts here (default: a temporary folder, removed at the end)")
    a = ap.parse_args()
    modes = [m for m in a.modes if m != "old" or a.baseline]
    tmp = None if a.workdir else tempfile.mkdtemp(prefix="bench_sft-")
    work = Path(a.workdir or tmp).resolve()
    try:
        trees = {"new": REPO}
        if "old" in modes:
            trees["old"] = work / f"src-{a.baseline}"
            if not trees["old"].exists():
                trees["old"].mkdir(parents=True)
                archive = subprocess.run(
                    ["git", "-C", str(REPO), "archive", a.baseline], capture_output=True, check=True
                ).stdout
                subprocess.run(["tar", "-x", "-C", str(trees["old"])], input=archive, check=True)
        results, seed = [], 1000
        for n in a.samples:
            traj = {name: prepare(tree, work / name, n) for name, tree in trees.items()}
            for _ in range(a.repeats):
                for mode in modes:
                    name = "old" if mode == "old" else "new"
                    seed += 1
                    r = measure(trees[name], work / name, n, traj[name], mode, seed)
                    results.append(r)
                    print(json.dumps(r), flush=True)
        print()
        print(table(results, modes, a.baseline))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
