"""Find ``metrics.json`` files (written by the eval stage) under a run, sweep or artifacts dir."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from egt.sweep import JOB_FILE

log = logging.getLogger(__name__)


@dataclass
class Result:
    path: Path
    data: dict[str, Any]
    # the overrides of the sweep job whose directory holds this file (its job.json), None outside a sweep
    job_overrides: Optional[tuple[str, ...]] = None

    @property
    def benchmark(self) -> str:
        return self.data["benchmark"]["name"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.data["metrics"]

    @property
    def model_label(self) -> str:
        return str(self.data["model"]["label"])

    @property
    def model_id(self) -> str:
        return json.dumps(self.data["model"].get("identity") or self.data["model"].get("path"), sort_keys=True)

    @property
    def variant(self) -> str:
        """What, beyond the model, changes the official number (Voting@K, sampling, a subset)."""
        e = self.data.get("eval_config") or {}
        parts = []
        if int(e.get("votes") or 1) > 1:
            parts.append(f"Voting@{e['votes']}")
        elif float(e.get("temperature") or 0) > 0:
            parts.append(f"T={e['temperature']}")
        if e.get("limit"):
            parts.append(f"first {e['limit']}")
        return ", ".join(parts)


def find_results(root: str | Path) -> list[Result]:
    """Every eval ``metrics.json`` under ``root`` (one per eval artifact key; copies deduplicated)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    seen: set[str] = set()
    out = []
    for path in sorted(root.rglob("metrics.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable %s (%s)", path, exc)
            continue
        if not isinstance(data, dict) or not {"benchmark", "model", "metrics"} <= set(data):
            continue  # some other metrics.json
        key = data.get("key") or str(path)
        if key in seen:
            continue
        seen.add(key)
        out.append(Result(path, data, _job_overrides(path, root)))
    return out


def _job_overrides(path: Path, root: Path) -> Optional[tuple[str, ...]]:
    """The overrides in the ``job.json`` of the nearest directory above ``path`` (up to ``root``), if any."""
    for d in path.parents:
        job = d / JOB_FILE
        if job.is_file():
            try:
                overrides = json.loads(job.read_text(encoding="utf-8")).get("overrides")
            except (OSError, json.JSONDecodeError, AttributeError):
                return None
            return tuple(str(o) for o in overrides) if isinstance(overrides, list) else None
        if d == root:
            break
    return None
