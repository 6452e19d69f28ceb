"""An append-only JSON-lines journal (atomic writes: egt.utils.atomic)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)


class Journal:
    """Append-only JSON-lines file, flushed and fsynced per append.

    A kill can tear only the last line; :meth:`read` drops such a line (and
    says so), so every record it returns was written whole. Appends from
    several threads are serialised (one lock per journal).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records, raw = [], self.path.read_bytes()
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # torn final write
                    log.warning("journal %s: dropping a torn last line (%d bytes)", self.path, len(line))
                    self._truncate(len(raw) - len(line))
                else:
                    raise ValueError(f"journal {self.path}: corrupt line {i + 1}") from None
        return records

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        if not data:
            return
        with self._lock, open(self.path, "a") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
