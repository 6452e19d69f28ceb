"""One record per run: ``job.json`` in the Hydra job's output dir (sweeps: one per job).

It holds what made the job (its overrides, the resolved config-group choices and the
settings the paper's tables vary), what it produced (each stage's artifact key and
summary, every eval ``metrics.json`` with its contents) and whether it failed, so
``python -m egt.report <sweep dir>`` groups jobs into table cells from these files alone.
The probe table and the selection are copied beside it (small files) for Figure 2 and
the notebooks. The record is redacted (:mod:`egt.utils.secrets`): overrides, params and the error
message never hold a secret.

Failures: Hydra's basic launcher runs a sweep's jobs one after another in one process and
records an exception as a failed job, runs the rest, then re-raises the first failure
(exit status 1). ``run_job`` keeps that contract: it writes ``status: failed`` with the
error and re-raises.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from egt import distributed
from egt.utils.atomic import copy_file_atomic, write_json_atomic
from egt.utils.secrets import redact, redacted_argv, scrub_exception

log = logging.getLogger(__name__)
VERSION = 1
JOB_FILE = "job.json"
# the settings the paper's experiments vary, recorded resolved (an override may set them indirectly)
PARAMS = (
    "seed",
    "rl.seed",
    "selection.name",
    "selection.k",
    "selection.fraction",
    "selection.percentile",
    "selection.band",
    "selection.seed",
    "curriculum.name",
    "curriculum.seed",
    "entropy.name",
    "model.name",
)


def hydra_job() -> Optional[dict[str, Any]]:
    """The running Hydra job's output dir, overrides and choices; None outside ``@hydra.main``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # not under @hydra.main (tests, notebooks)
        return None
    return {
        "dir": str(hc.runtime.output_dir),
        "mode": str(hc.mode).split(".")[-1],
        "num": hc.job.get("num"),
        "sweep_dir": str(hc.sweep.dir) if str(hc.mode).endswith("MULTIRUN") else None,
        "overrides": [str(o) for o in hc.overrides.task],
        "choices": {
            str(k): (v if v is None or isinstance(v, str) else str(v))
            for k, v in OmegaConf.to_container(hc.runtime.choices).items()
        },
    }


def resolved_params(cfg: DictConfig) -> dict[str, Any]:
    return {p: OmegaConf.select(cfg, p, default=None) for p in PARAMS}


def _scalars(d: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in (d or {}).items() if v is None or isinstance(v, (int, float, str, bool))}


def _metrics_entries(results: dict[str, dict[str, Any]], job_dir: Path) -> list[dict[str, Any]]:
    out = []
    for name, r in ((results.get("eval") or {}).get("results") or {}).items():
        src = Path(r["metrics_path"])
        data = json.loads(src.read_text(encoding="utf-8"))
        model, bench = data["model"]["label"], data["benchmark"]["name"]
        copy = job_dir / "eval" / str(model) / str(bench) / "metrics.json"
        out.append(
            {
                "model": model,
                "benchmark": bench,
                "key": data.get("key"),
                "path": str(copy.relative_to(job_dir)) if copy.is_file() else str(src),
                "columns": data["benchmark"].get("columns"),
                "headline_key": data["benchmark"].get("headline_key"),
                "model_identity": data["model"].get("identity"),
                "metrics": data["metrics"],
            }
        )
    return out


def _copy_small_files(results: dict[str, dict[str, Any]], job_dir: Path) -> dict[str, str]:
    """The probe table and selection beside job.json (the report and notebooks read them)."""
    files = {}
    for name, stage, field in (("probe", "probe", "table_path"), ("selection", "select", "selection_path")):
        src = (results.get(stage) or {}).get(field)
        if src and Path(src).is_file():
            dst = job_dir / Path(src).name
            copy_file_atomic(src, dst)
            files[name] = dst.name
    return files


def job_record(
    cfg: DictConfig,
    job: dict[str, Any],
    results: Optional[dict[str, dict[str, Any]]],
    error: Optional[BaseException],
    seconds: float,
    headline: Optional[float],
) -> dict[str, Any]:
    job_dir = Path(job["dir"])
    results = results or {}
    rec: dict[str, Any] = {
        "version": VERSION,
        "status": "failed" if error is not None else "completed",
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "traceback": None if error is None else "".join(traceback.format_exception(error))[-4000:],
        "job": {k: job[k] for k in ("num", "mode", "sweep_dir")},
        "overrides": job["overrides"],
        "choices": job["choices"],
        "params": resolved_params(cfg),
        "stages_requested": [str(s) for s in cfg.stages],
        "headline": headline,
        "seconds": round(seconds, 2),
        "finished_at": time.time(),
        "stages": {
            s: {
                "key": r.get("key"),
                "path": r.get("path"),
                "reused": r.get("reused"),
                "summary": _scalars(r.get("summary")),
            }
            for s, r in results.items()
        },
        "metrics": [],
        "files": {},
    }
    if error is None:
        rec["metrics"] = _metrics_entries(results, job_dir)
        rec["files"] = _copy_small_files(results, job_dir)
    return rec


def run_job(
    cfg: DictConfig,
    run: Callable[[], dict[str, dict[str, Any]]],
    headline: Callable[[dict], Optional[float]],
    job: Optional[dict[str, Any]] = None,
) -> Optional[float]:
    """Run the pipeline (``run()`` → stage results) and write ``job.json`` whatever happens.
    ``job``: dir, overrides and choices (default: the running Hydra job's; none: no file)."""
    job = job or hydra_job()
    t0 = time.perf_counter()
    try:
        results = run()
    except Exception as exc:
        scrub_exception(exc)  # its message is written below, logged, and printed by Hydra
        if job is not None and distributed.is_main():  # under torchrun every rank runs the job; rank 0 records it
            write_json_atomic(
                Path(job["dir"]) / JOB_FILE, redact(job_record(cfg, job, None, exc, time.perf_counter() - t0, None))
            )
            log.error("job failed (%s: %s); recorded in %s", type(exc).__name__, exc, Path(job["dir"]) / JOB_FILE)
        raise
    value = headline(results)
    if os.environ.get("WANDB_SWEEP_ID") and distributed.is_main():
        log_to_wandb_sweep(cfg, results, value)
    if job is not None and distributed.is_main():
        write_json_atomic(
            Path(job["dir"]) / JOB_FILE, redact(job_record(cfg, job, results, None, time.perf_counter() - t0, value))
        )
    return value


def sweep_metrics(results: dict[str, dict[str, Any]], value: Optional[float]) -> dict[str, Any]:
    """What a W&B sweep sees: ``eval/headline`` (its metric) and ``eval/<model>/<benchmark>``."""
    out: dict[str, Any] = {"eval/headline": value}
    for name, v in ((results.get("eval") or {}).get("summary") or {}).items():
        if name != "headline" and isinstance(v, (int, float)):
            out[f"eval/{name}"] = v
    return out


def log_to_wandb_sweep(cfg: DictConfig, results: dict[str, dict[str, Any]], value: Optional[float]) -> None:
    """Under ``wandb agent`` (WANDB_SWEEP_ID and WANDB_RUN_ID set by the agent) put the metric
    in the agent's run summary; WANDB_MODE=offline keeps it in an offline run to sync later."""
    import wandb

    with redacted_argv():
        run = wandb.init(
            project=OmegaConf.select(cfg, "logger.project", default=None) or "egt",
            resume="allow",
            dir=str(cfg.paths.logs),
        )
    try:
        metrics = sweep_metrics(results, value)
        run.log({k: v for k, v in metrics.items() if v is not None})
        run.summary.update(metrics)
    finally:
        run.finish()


def load_jobs(root: str | Path) -> list[dict[str, Any]]:
    """Every ``job.json`` under ``root`` (each with ``_dir``: its folder, ``_rel``: that folder
    relative to ``root``), in path order."""
    out = []
    root = Path(root)
    for path in sorted(root.rglob(JOB_FILE)):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable %s (%s)", path, exc)
            continue
        if isinstance(rec, dict) and "overrides" in rec and "status" in rec:
            rec["_dir"], rec["_rel"] = str(path.parent), path.parent.relative_to(root).as_posix()
            out.append(rec)
    return out


def override_value(job: dict[str, Any], key: str) -> Optional[str]:
    """The value a job's command-line / sweep overrides gave ``key`` (``+key=``, ``++key=`` too).

    >>> override_value({"overrides": ["+ablation=full_rl", "rl.seed=2"]}, "ablation")
    'full_rl'
    >>> override_value({"overrides": ["rl.seed=2"]}, "selection") is None
    True
    """
    for o in reversed(job["overrides"]):
        k, eq, v = o.lstrip("+~").partition("=")
        if eq and k == key:
            return v
    return None
