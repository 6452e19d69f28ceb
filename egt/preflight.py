"""Check the local paths a config names before any stage starts (called by ``egt.config.validate``).

A missing checkpoint, data file or benchmark folder is a mistake the user fixes by editing one setting;
found inside a stage it costs every stage before it (a data stage, an SFT run, an opened artifact). Only
the settings the stages of this run will read are checked: :func:`stages_to_run` follows each stage's
own choice of upstream stages (an outside model, table or trajectories file replaces a stage), so a
path set for a stage that does not run is never an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from egt.errors import ConfigError


def _upstream(cfg: DictConfig, stage: str) -> tuple[str, ...]:
    """The stages ``stage`` asks the pipeline for under ``cfg`` (a subset of its module's REQUIRES;
    mirrors the ``run`` of egt/stages/<stage>.py: keep the two in step)."""
    if stage == "distill":
        return () if cfg.distill.trajectories_path else ("data",)
    if stage == "sft":
        return () if cfg.sft.model_path else ("model", "data", "distill")
    if stage == "probe":
        if cfg.probe.table_path:
            return ()
        return ("data",) if cfg.probe.model_path else ("data", "sft")
    if stage == "select":
        return ("probe",)
    if stage == "rl":
        online = cfg.curriculum.get("reprobe_every", 0) > 0 and cfg.selection.get("online", False)
        return ("data", "sft") + (() if cfg.rl.selection_path else ("select",)) + (("probe",) if online else ())
    if stage == "eval":
        if cfg.eval.model_path:
            return ("data",)
        requested = {str(s) for s in cfg.stages}
        return ("data", "sft") + tuple(str(m) for m in cfg.eval.models if str(m) != "sft" and str(m) in requested)
    return ()  # model, data


def stages_to_run(cfg: DictConfig) -> list[str]:
    """Every stage this run executes: ``cfg.stages`` and what they ask for, in first-asked order.

    The eval stage counts ``data`` (the synthetic bench reads its bench split) whatever the benchmarks.
    """
    out: list[str] = []

    def visit(stage: str) -> None:
        if stage not in out:
            out.append(stage)
            for up in _upstream(cfg, stage):
                visit(up)

    for stage in cfg.stages:
        visit(str(stage))
    return out


def looks_local(path: str) -> bool:
    """Whether a data source's ``path`` is a local path rather than a Hub id (egt.data.sources reads
    anything that is not a local file or folder as a Hub id, ``org/name``).

    >>> [looks_local(p) for p in ("/data/x.parquet", "~/d", "./d", "data/a/b.jsonl", "org/name", "name")]
    [True, True, True, True, False, False]
    """
    return path.startswith(("/", ".", "~")) or (os.sep in path and not re.fullmatch(r"[\w.-]+/[\w.-]+", path))


def _source_paths(cfg: DictConfig) -> Iterator[tuple[str, str, str]]:
    """(setting, path, kind) of every local path the data stage reads; kind: ``any``, ``dir``."""
    d = cfg.data
    if d.get("path"):
        yield "data.path", str(d.path), "any"
    if d.get("image_root"):
        yield "data.image_root", str(d.image_root), "dir"
    sources = d.get("sources") or {}
    for split in sources:
        for i, spec in enumerate(sources[split] or []):
            path = None if OmegaConf.is_missing(spec, "path") else spec.get("path")
            if path and str(path) != str(d.get("path")) and looks_local(str(path)):
                yield f"data.sources.{split}[{i}].path", str(path), "any"
            if spec.get("image_root"):
                yield f"data.sources.{split}[{i}].image_root", str(spec.image_root), "dir"


def configured_paths(cfg: DictConfig, stages: list[str]) -> list[tuple[str, str, str]]:
    """(setting, path, kind) of each local path the ``stages`` will read; kind ``dir`` (a model or
    image folder), ``file`` or ``any`` (a file or a folder of files)."""
    out: list[tuple[str, str, str]] = []
    if "model" in stages and cfg.model.get("path"):
        out.append(("model.path", str(cfg.model.path), "dir"))
    if "data" in stages:
        out += list(_source_paths(cfg))
    if "distill" in stages and cfg.distill.trajectories_path:
        out.append(("distill.trajectories_path", str(cfg.distill.trajectories_path), "any"))
    if "sft" in stages and cfg.sft.model_path:
        out.append(("sft.model_path", str(cfg.sft.model_path), "dir"))
    if "probe" in stages and cfg.probe.table_path:
        out.append(("probe.table_path", str(cfg.probe.table_path), "file"))
    elif "probe" in stages and cfg.probe.model_path:
        out.append(("probe.model_path", str(cfg.probe.model_path), "dir"))
    if "rl" in stages and cfg.rl.selection_path:
        out.append(("rl.selection_path", str(cfg.rl.selection_path), "file"))
    if "eval" in stages and cfg.eval.model_path:
        out.append(("eval.model_path", str(cfg.eval.model_path), "dir"))
    return out


_WHAT = {"dir": "a directory", "file": "a file", "any": "a file or directory"}
_HINT = {
    "model.path": "a local Hugging Face model directory (with config.json)",
    "sft.model_path": "a local Hugging Face model directory, e.g. an earlier run's artifacts/sft/<key>/model",
    "probe.model_path": "a local Hugging Face model directory (the judge to probe)",
    "eval.model_path": "a local Hugging Face model directory (the judge to evaluate)",
    "probe.table_path": "a probe.parquet (the probe stage writes one)",
    "rl.selection_path": "a selection.json (the select stage writes one)",
    "distill.trajectories_path": "a trajectories folder or file (the distill stage writes one)",
}


def _problem(path: str, kind: str) -> Optional[str]:
    """Why ``path`` cannot be read as ``kind``, or None when it can."""
    p = Path(path).expanduser()
    if not path.strip() or not p.exists():
        return "does not exist"
    if kind == "dir" and not p.is_dir():
        return "is not a directory"
    if kind == "file" and not p.is_file():
        return "is not a file"
    return None


def check_paths(cfg: DictConfig) -> None:
    """Raise ConfigError naming the setting and the path of the first configured local path, among
    those the stages of this run read, that does not exist (or is the wrong kind)."""
    stages = stages_to_run(cfg)
    for setting, path, kind in configured_paths(cfg, stages):
        problem = _problem(path, kind)
        if problem:
            hint = _HINT.get(setting, _WHAT[kind])
            raise ConfigError(f"{setting}={path} {problem}: point it at {hint}")
    if "eval" in stages:
        _check_benchmarks(cfg)


def _check_benchmarks(cfg: DictConfig) -> None:
    """Each benchmark of ``eval.benchmarks`` that reads files (not a stage's data set) has them:
    ``<eval.data_root>/<name>`` or its own ``path``."""
    from egt.benchmarks import make
    from egt.benchmarks.base import BenchmarkDataError

    for spec in cfg.eval.benchmarks:
        bench: Any = make(spec, cfg.eval.on_bad_sample, cfg.eval.limit, cfg.eval.seed)
        if bench.source_stage and not bench.path:
            continue
        try:
            bench.root(cfg.eval.data_root)
        except BenchmarkDataError as exc:
            setting = "eval.data_root" if cfg.eval.data_root and not bench.path else "eval.benchmarks"
            raise ConfigError(f"{setting}: {exc}") from exc
