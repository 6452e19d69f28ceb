"""Runs the stages named in ``cfg.stages``; resolves upstream stages on demand.

Each stage is ``egt.stages.<name>.run(cfg, pipe) -> dict``, with ``summary_line(summary) -> str``, its
line in the end-of-run summary (:func:`format_summary`). A stage asks the pipeline for what it needs
(``pipe.get("data")``), only among the stages its module declares in ``REQUIRES``; the pipeline runs that
stage once per process, and the artifact store makes a finished stage a cheap reuse. So ``stages=[sft]``
works on a fresh machine too.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any, Optional

from omegaconf import DictConfig

from egt.artifacts import ArtifactStore
from egt.stages import STAGES

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.store = ArtifactStore(cfg.paths.artifacts)
        self.results: dict[str, dict[str, Any]] = {}
        self._running: list[str] = []

    def get(self, stage: str) -> dict[str, Any]:
        """The result of ``stage`` (run now if this process has not run it yet).

        Raises:
            KeyError: ``stage`` is not one of egt.stages.STAGES.
            RuntimeError: a stage asked for one not in its module's ``REQUIRES``, or a dependency cycle.
        """
        if stage not in STAGES:
            raise KeyError(f"no stage {stage!r} (egt.stages.STAGES: {', '.join(STAGES)})")
        if self._running:
            caller = self._running[-1]
            allowed = importlib.import_module(f"egt.stages.{caller}").REQUIRES
            if stage not in allowed:
                raise RuntimeError(
                    f"stage {caller!r} asked for {stage!r}, which is not in its REQUIRES {allowed} "
                    f"(egt/stages/{caller}.py)"
                )
        if stage in self.results:
            return self.results[stage]
        if stage in self._running:
            raise RuntimeError(f"stage dependency cycle: {' -> '.join(self._running + [stage])}")
        self._running.append(stage)
        try:
            module = importlib.import_module(f"egt.stages.{stage}")
            t0 = time.perf_counter()
            result = module.run(self.cfg, self)
            result.setdefault("seconds", round(time.perf_counter() - t0, 2))
        finally:
            self._running.pop()
        self.results[stage] = result
        return result

    def run(self) -> dict[str, dict[str, Any]]:
        """Every stage of ``cfg.stages`` in order, except one whose output nothing in this run would read
        (a stage module's ``unused(cfg)`` gives the reason: distillation when ``sft.model_path`` replaces
        SFT); it is recorded as skipped, with the reason, and logged."""
        for stage in map(str, self.cfg.stages):
            unused = getattr(importlib.import_module(f"egt.stages.{stage}"), "unused", None)
            reason = unused(self.cfg) if unused is not None and stage not in self.results else None
            if reason:
                log.info("[%s] skipped: %s", stage, reason)
                self.results[stage] = {"key": None, "skipped": reason, "reused": False, "summary": {}, "seconds": 0.0}
                continue
            self.get(stage)
        return self.results


def summary_line(stage: str, summary: dict[str, Any]) -> str:
    """One line of what a stage's run showed (the full summary is in its ``_SUCCESS.json``): the stage
    module's ``summary_line(summary)``, empty for a stage without one."""
    line = getattr(importlib.import_module(f"egt.stages.{stage}"), "summary_line", None)
    return line(summary or {}) if line is not None else ""


def format_summary(results: dict[str, dict[str, Any]], job: Optional[str] = None) -> str:
    """The end-of-run report: per stage computed/reused, seconds, its summary line; where the figures,
    metrics and full summaries are. ``job`` names the sweep job it is one of (its number and overrides), so
    the last job's summary printed at a sweep's end is not read as the sweep's."""
    title = "egt pipeline summary: what this run showed" + (f" ({job})" if job else "")
    lines = ["", title, f"{'stage':8s} {'state':8s} {'seconds':>8s}  headline"]
    for stage, r in results.items():
        state = "skipped" if r.get("skipped") else "reused" if r.get("reused") else "computed"
        line = r["skipped"] if r.get("skipped") else summary_line(stage, r.get("summary") or {})
        lines.append(f"{stage:8s} {state:8s} {r.get('seconds', 0):8.1f}  {line}")
    where = [
        ("Figure 2", results.get("probe", {}).get("figure_path")),
        ("selection", results.get("select", {}).get("selection_path")),
    ]
    where += [(f"{stage} artifact", r.get("path")) for stage, r in results.items() if r.get("path")]
    lines += [f"  {name}: {path}" for name, path in where if path]
    lines.append(
        "  full summaries: <artifact>/_SUCCESS.json (and the log above); tables: python -m egt.report <run dir>"
    )
    return "\n".join(lines)
