"""Content-addressed artifact store (docs/design.md §1.2–1.3).

A stage writes to ``<root>/<stage>/<key>/`` where ``key`` is a short hash of
the config that determines the output, the upstream keys and a stage version.
The directory is also the stage's work dir, so a killed stage finds its
journal / checkpoints there and resumes. The *last* thing written is
``_SUCCESS.json`` (written to a temp file and renamed), so a half-written
artifact is never read as finished. A file lock per key makes concurrent jobs
(Hydra multirun, several nodes sharing a file system) compute a key once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from egt import distributed as dist
from egt.utils.atomic import remove_path, write_json_atomic
from egt.utils.secrets import redact

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS.json"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def make_key(stage: str, config: Any, upstream: dict[str, str] | None = None, version: int = 1) -> str:
    """Short stable hash of what determines a stage's output, in its redacted form
    (:func:`egt.utils.secrets.redact`: a secret never reaches a key, the name of its variable may).

    >>> make_key("sft", {"lr": 1e-3}) == make_key("sft", {"lr": 0.001})
    True
    >>> make_key("sft", {"lr": 1e-3}) != make_key("sft", {"lr": 2e-3})
    True
    """
    payload = {"stage": stage, "config": redact(config), "upstream": upstream or {}, "version": version}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:12]


def content_fingerprint(path: str | Path, sample_bytes: int = 1 << 16) -> str:
    """A fingerprint of an outside file or folder by its content, for artifact keys: every file's
    relative name and size, and its first, middle and last ``sample_bytes`` bytes (a retrained model
    saved to the same path changes its weights' bytes there; a safetensors header alone would not
    change). Reads at most 3 × ``sample_bytes`` per file, so a 15 GB checkpoint costs milliseconds.
    A path that does not exist fingerprints as ``missing:<path>``.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = f.write_bytes(b"a" * 10); a = content_fingerprint(f)
    >>> _ = f.write_bytes(b"b" * 10); a == content_fingerprint(f)
    False
    """
    p = Path(path).expanduser()
    if not p.exists():
        return f"missing:{p}"
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            for start in sorted({0, max(0, size // 2 - sample_bytes // 2), max(0, size - sample_bytes)}):
                fh.seek(start)
                h.update(fh.read(sample_bytes))
    return h.hexdigest()[:16]


def is_done(path: str | Path) -> bool:
    return (Path(path) / SUCCESS).is_file()


def read_success(path: str | Path) -> dict:
    return json.loads((Path(path) / SUCCESS).read_text())


_PID_TMP = re.compile(r"^\..*\.tmp-(\d+)(?:-[0-9a-f]+)?$")  # egt's atomic writes: .NAME.tmp-PID[-uuid]
_MKSTEMP_TMP = re.compile(r"^\..*\.tmp$")  # older temporaries (.NAME.XXXXXXXX.tmp: mkstemp, sweep copies)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_debris(path: Path, stale_seconds: float = 600.0) -> list[Path]:
    """Remove what killed attempts left in an artifact directory: egt's atomic-write temporaries
    (``.NAME.tmp-PID``) of processes that are gone (or of this one: it has finished), and
    ``.NAME.XXXXXXXX.tmp`` files older than ``stale_seconds``. Called by :meth:`Artifact.finish`
    before the artifact is marked finished, so nothing torn stays in a finished artifact. Returns
    what was removed."""
    removed = []
    now = time.time()
    for p in sorted(Path(path).rglob(".*"), key=lambda q: len(q.parts), reverse=True):
        m = _PID_TMP.match(p.name)
        debris = (m is not None and (int(m.group(1)) == os.getpid() or not _alive(int(m.group(1))))) or (
            _MKSTEMP_TMP.match(p.name) is not None and p.is_file() and now - p.stat().st_mtime > stale_seconds
        )
        if debris and p.exists():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p)
    return removed


@dataclass
class Artifact:
    stage: str
    key: str
    path: Path
    reused: bool
    summary: dict

    def finish(self, summary: dict, meta: dict | None = None, drop: tuple[str, ...] = ()) -> None:
        """Mark the artifact finished: the last write, atomic (rank 0 writes; other ranks only keep
        ``summary``). ``drop``: paths in the artifact that only a killed attempt needed (a training stage's
        ``checkpoints/``), removed once it is marked finished (a kill before that leaves them, never an
        unfinished artifact without its resume state)."""
        self.summary = summary
        if not dist.is_main():
            return
        record = {"stage": self.stage, "key": self.key, "summary": summary, "finished_at": time.time()}
        record.update(meta or {})
        record = redact(record)  # the stages pass redacted configs; this catches what slipped through
        if dist.world_size() == 1:  # other ranks' temporaries may still be in flight (other nodes' pids too)
            removed = remove_debris(self.path)
            if removed:
                log.info(
                    "[%s] removed %d temporaries of killed attempts: %s",
                    self.stage,
                    len(removed),
                    [p.name for p in removed[:5]],
                )
        write_json_atomic(self.path / SUCCESS, record)
        self.summary = summary
        for rel in drop:  # best effort: the artifact is finished, whatever the file system says now
            target = self.path / rel
            try:
                if not target.exists():
                    continue
                files = [f for f in target.rglob("*") if f.is_file()] if target.is_dir() else [target]
                size = sum(f.stat().st_size for f in files)
                remove_path(target, ignore_errors=False)
                log.info("[%s] removed %s (%.2f GB) from the finished artifact", self.stage, rel, size / 1e9)
            except OSError as exc:
                log.warning(
                    "[%s] could not remove %s from the finished artifact (%s); remove it by hand",
                    self.stage,
                    target,
                    exc,
                )


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    @contextmanager
    def open(self, stage: str, key: str, lock_timeout: float = -1, ranks: str = "main") -> Iterator[Artifact]:
        """Yield the artifact for (stage, key), locked; ``reused`` tells whether it is finished.

        The caller computes into ``artifact.path`` when not reused and calls
        ``artifact.finish(summary)`` as its last step. ``ranks`` matters only under a
        multi-process launch: ``main`` (rank 0 computes, the others get the finished
        artifact) or ``all`` (every rank runs the body).
        """
        if ranks not in ("main", "all"):
            raise ValueError(f"ranks={ranks!r} must be 'main' or 'all'")
        if dist.world_size() == 1:
            with self._locked(stage, key, lock_timeout) as art:
                yield art
        elif ranks == "main":
            with self._main_rank(stage, key, lock_timeout) as art:
                yield art
        else:
            with self._all_ranks(stage, key, lock_timeout) as art:
                yield art

    @contextmanager
    def _locked(self, stage: str, key: str, lock_timeout: float) -> Iterator[Artifact]:
        path = self.path(stage, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=lock_timeout):
            if is_done(path):
                summary = read_success(path).get("summary", {})
                log.info("[%s] reusing finished artifact %s", stage, path)
                yield Artifact(stage, key, path, True, summary)
                return
            path.mkdir(parents=True, exist_ok=True)
            log.info("[%s] computing artifact %s", stage, path)
            art = Artifact(stage, key, path, False, {})
            yield art
            if not is_done(path):
                raise RuntimeError(f"stage {stage} returned without finishing its artifact {path}")

    def _finished(self, stage: str, key: str) -> Artifact:
        path = self.path(stage, key)
        if not is_done(path):
            raise RuntimeError(
                f"rank {dist.rank()}: rank 0 did not finish {stage} artifact {path} (see rank 0's "
                "error), or paths.artifacts is not on a file system every node sees"
            )
        return Artifact(stage, key, path, True, read_success(path).get("summary", {}))

    @contextmanager
    def _main_rank(self, stage: str, key: str, lock_timeout: float) -> Iterator[Artifact]:
        if dist.is_main():
            try:
                with self._locked(stage, key, lock_timeout) as art:
                    yield art
            finally:  # also on failure: the others then fail with a clear message instead of hanging
                dist.barrier()
        else:
            dist.barrier()
            yield self._finished(stage, key)

    @contextmanager
    def _all_ranks(self, stage: str, key: str, lock_timeout: float) -> Iterator[Artifact]:
        path = self.path(stage, key)
        lock = FileLock(str(path) + ".lock", timeout=lock_timeout)
        done = None
        if dist.is_main():
            path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            done = is_done(path)
            path.mkdir(parents=True, exist_ok=True)
        try:
            done = dist.broadcast(done)
            if done:
                log.info("[%s] reusing finished artifact %s", stage, path)
                yield self._finished(stage, key)
                return
            log.info("[%s] computing artifact %s on %d processes", stage, path, dist.world_size())
            art = Artifact(stage, key, path, False, {})
            yield art
            dist.barrier()  # every rank is through the body; rank 0 has written the marker
            finished = self._finished(stage, key)
            art.summary = finished.summary
        finally:
            if dist.is_main():
                lock.release()
