"""The fidelity filter of paper §2.2, concurrent and journaled so that a killed run resumes.

The teacher sees each sample without its label and gets up to
``max_attempts`` tries; the first attempt whose parsed answer equals the
label is kept, a sample whose every attempt fails is discarded. A failed
attempt has a cause: ``wrong_answer``, ``parse`` (no parsable answer),
``no_reasoning`` (an answer with empty ``<think>``), or a
transport/format cause from the teacher (``timeout``, ``http_5xx``,
``bad_json``, ``truncated``, …).

Work goes out in *units* (one attempt for a batch of samples; a batch of one
for a remote teacher) to a bounded thread pool of ``concurrency`` workers.
Only the main thread writes: each unit's records are appended to the journal
(flushed, fsynced) as soon as the unit returns, and a failed sample's next
attempt is queued only then. So after a kill no recorded ``(sample, attempt)``
is asked again and none is lost; an attempt in flight at the kill is asked again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from egt.data.prompt import normalise_output, parse_answer
from egt.data.schema import BadSampleError
from egt.distill.teacher import Reply, RequestBudget, Teacher, strip_label
from egt.utils.io import Journal

log = logging.getLogger(__name__)
Progress = Callable[[list[dict[str, Any]]], None]


@dataclass
class FidelityState:
    """What the journal says so far: attempts and kept attempt per sample id, and the counts of stats.json."""

    attempts: dict[str, int] = field(default_factory=dict)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failures: Counter = field(default_factory=Counter)  # failed attempts by cause
    retries: Counter = field(default_factory=Counter)  # transport retries by cause
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_reported: int = 0  # attempts whose endpoint reported usage

    @property
    def parse_failures(self) -> int:
        return self.failures["parse"]

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> "FidelityState":
        state = cls()
        for r in records:
            state.add(r)
        return state

    def add(self, r: dict[str, Any]) -> None:
        sid = r["id"]
        if r.get("skipped"):
            self.skipped[sid] = r["skipped"]
            return
        self.attempts[sid] = max(self.attempts.get(sid, 0), r["attempt"])
        if not r["ok"]:
            self.failures[r.get("cause") or ("parse" if r["parsed"] is None else "wrong_answer")] += 1
        self.retries.update(r.get("retries") or {})
        self.requests += r.get("requests", 0)
        if r.get("tokens_in") is not None or r.get("tokens_out") is not None:
            self.tokens_reported += 1
            self.tokens_in += r.get("tokens_in") or 0
            self.tokens_out += r.get("tokens_out") or 0
        if r["ok"] and (sid not in self.kept or r["attempt"] < self.kept[sid]["attempt"]):
            self.kept[sid] = r

    def next_attempt(self, sid: str, max_attempts: int) -> int | None:
        """The attempt number ``sid`` needs next, or None when it is decided (kept, skipped or exhausted)."""
        if sid in self.kept or sid in self.skipped:
            return None
        n = self.attempts.get(sid, 0) + 1
        return n if n <= max_attempts else None

    def pending(self, ids: Sequence[str], attempt: int) -> list[str]:
        """Ids that still need attempt number ``attempt``."""
        return [i for i in ids if i not in self.kept and i not in self.skipped and self.attempts.get(i, 0) < attempt]


def judge_attempt(sample: dict[str, Any], reply: Reply | str | None, attempt: int) -> dict[str, Any]:
    """One journal record: normalised output, parsed answer, whether it matches the label, and the cost."""
    reply = reply if isinstance(reply, Reply) else Reply(text=reply)
    raw = reply.text
    text = normalise_output(raw) if isinstance(raw, str) else None
    parsed = parse_answer(text) if text is not None else None
    empty = text is not None and text.startswith("<think></think>")  # an answer without reasoning
    ok = parsed is not None and parsed == int(sample["label"]) and not empty
    cause = None if ok else reply.cause or ("parse" if parsed is None else "no_reasoning" if empty else "wrong_answer")
    return {
        "id": sample["id"],
        "attempt": attempt,
        "parsed": parsed,
        "ok": ok,
        "cause": cause,
        "output": text if text is not None else ("" if raw is None else str(raw)[:4000]),
        "requests": reply.requests,
        "retries": dict(reply.retries),
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
    }


def _ask(
    teacher: Teacher, batch: list[dict], attempt: int, budget: RequestBudget | None, on_bad_sample: str
) -> list[dict[str, Any]]:
    """Records for one unit (runs in a worker thread). A sample the teacher cannot send
    (:class:`BadSampleError`) stops the run, or with ``on_bad_sample="skip"`` is recorded as skipped
    (a batch is then asked again one sample at a time to find it)."""
    try:
        replies = teacher.answer([strip_label(s) for s in batch], attempt, budget)
    except BadSampleError as e:
        if on_bad_sample != "skip":
            raise
        if len(batch) > 1:
            return [r for s in batch for r in _ask(teacher, [s], attempt, budget, on_bad_sample)]
        log.warning("[distill] skipping %s", e)
        return [{"id": batch[0]["id"], "attempt": attempt, "skipped": str(e), "ok": False, "parsed": None}]
    if len(replies) != len(batch):
        raise RuntimeError(f"teacher {teacher.name} returned {len(replies)} outputs for {len(batch)} samples")
    return [judge_attempt(s, r, attempt) for s, r in zip(batch, replies)]


def _check_ids(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_id = {s["id"]: s for s in samples}
    if len(by_id) != len(samples):
        dup = [k for k, v in Counter(s["id"] for s in samples).items() if v > 1][:5]
        raise ValueError(f"duplicate sample ids in the distillation input, e.g. {dup}")
    return by_id


class _Units:
    """Ready units ``(attempt, ids)``; retries wait in per-attempt buffers until a unit is full."""

    def __init__(self, size: int):
        self.size, self.ready, self.buffers = size, deque(), {}

    def add(self, attempt: int, sid: str) -> None:
        buf = self.buffers.setdefault(attempt, [])
        buf.append(sid)
        if len(buf) >= self.size:
            self.ready.append((attempt, self.buffers.pop(attempt)))

    def pop(self, idle: bool) -> tuple[int, list[str]] | None:
        """The next unit; a partial buffer only when nothing else is queued or running (``idle``)."""
        if not self.ready and idle and self.buffers:
            attempt = min(self.buffers)
            self.ready.append((attempt, self.buffers.pop(attempt)))
        return self.ready.popleft() if self.ready else None


class _Run:
    """One pass of the filter: submits units to the pool, journals results as they arrive (main thread only)."""

    def __init__(
        self,
        teacher: Teacher,
        by_id: dict[str, dict[str, Any]],
        journal: Journal,
        state: FidelityState,
        max_attempts: int,
        units: _Units,
        progress: Progress | None,
        budget: RequestBudget | None,
        on_bad_sample: str,
    ):
        self.teacher, self.by_id, self.journal, self.state = teacher, by_id, journal, state
        self.max_attempts, self.units, self.progress = max_attempts, units, progress
        self.budget, self.on_bad_sample = budget, on_bad_sample
        self.running: dict[Future, int] = {}
        self.stop: BaseException | None = None

    def fill(self, pool: ThreadPoolExecutor, workers: int) -> None:
        while self.stop is None and len(self.running) < workers:
            unit = self.units.pop(idle=not self.running)
            if unit is None:
                return
            batch = [self.by_id[i] for i in unit[1]]
            fut = pool.submit(_ask, self.teacher, batch, unit[0], self.budget, self.on_bad_sample)
            self.running[fut] = unit[0]

    def collect(self, timeout: float | None = None) -> None:
        """Journal every finished unit and queue the next attempt of its failed samples."""
        finished, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        for fut in finished:
            self.running.pop(fut)
            try:
                records = fut.result()
            except BaseException as e:  # the cap, a bad sample: finish what runs, then raise
                self.stop = self.stop or e
                continue
            self.journal.append(records)
            for r in records:
                self.state.add(r)
                nxt = self.state.next_attempt(r["id"], self.max_attempts)
                if nxt is not None and self.stop is None:
                    self.units.add(nxt, r["id"])
            if self.progress:
                self.progress(records)


def run_fidelity_filter(
    teacher: Teacher,
    samples: Sequence[dict[str, Any]],
    journal: Journal,
    max_attempts: int = 3,
    batch_size: int = 64,
    progress: Progress | None = None,
    concurrency: int = 1,
    budget: RequestBudget | None = None,
    on_bad_sample: str = "error",
) -> FidelityState:
    """Ask ``teacher`` for every sample not yet decided, attempt after failed attempt; return the final state.

    On an error in a unit (request cap, unencodable sample) or Ctrl-C, units in flight are
    still journaled before the error is raised.
    """
    state = FidelityState.from_records(journal.read())
    by_id = _check_ids(samples)
    workers = max(1, min(concurrency, teacher.max_concurrency or concurrency))
    units = _Units(batch_size if teacher.batched else 1)
    for attempt in range(1, max_attempts + 1):  # attempt-major order, as a sequential run asks
        for sid in by_id:
            if state.next_attempt(sid, max_attempts) == attempt:
                units.add(attempt, sid)
    run = _Run(teacher, by_id, journal, state, max_attempts, units, progress, budget, on_bad_sample)
    with ThreadPoolExecutor(workers, thread_name_prefix="teacher") as pool:
        try:
            while True:
                run.fill(pool, workers)
                if not run.running:
                    break
                run.collect()
        except KeyboardInterrupt as e:  # a second Ctrl-C while draining ends it at once
            run.stop = e
            log.warning("[distill] interrupted: journaling the %d requests in flight", len(run.running))
            while run.running:
                run.collect()
    if run.stop is not None:
        raise run.stop
    return state


def fidelity_stats(
    state: FidelityState, samples: Sequence[dict[str, Any]], max_attempts: int, seconds: float
) -> dict[str, Any]:
    """The numbers of ``stats.json`` (summed over the whole journal, across restarts)."""
    n = len(samples)
    hist = Counter(r["attempt"] for r in state.kept.values())
    kept, skipped = len(state.kept), len(state.skipped)
    return {
        "seen": n,
        "kept": kept,
        "discarded": n - kept - skipped,
        "skipped_bad_samples": skipped,
        "kept_rate": round(kept / max(n, 1), 4),
        "attempts_histogram": {str(a): hist.get(a, 0) for a in range(1, max_attempts + 1)},
        "teacher_calls": sum(state.attempts.values()),
        "parse_failures": state.parse_failures,
        "failures_by_cause": dict(sorted(state.failures.items())),
        "retries_by_cause": dict(sorted(state.retries.items())),
        "requests": state.requests,
        "tokens_in": state.tokens_in if state.tokens_reported else None,
        "tokens_out": state.tokens_out if state.tokens_reported else None,
        "wall_seconds": round(seconds, 2),
    }


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
