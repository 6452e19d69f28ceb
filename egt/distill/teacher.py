"""The teacher interface for distillation (paper §2.2, docs/design.md §2.5).

A teacher turns judge samples into raw reasoning outputs; the distill stage
normalises them (:func:`egt.data.prompt.normalise_output`) and keeps those whose
answer matches the label (the fidelity filter), retrying with ``attempt + 1``.

**A teacher must never see the label.** Callers pass every sample through
:func:`strip_label`, which removes ``label`` and, from ``meta``, every field that
reveals it (``true_label``, ``flipped``). The synthetic teacher may read the
rest of ``meta`` (the scene), as a real teacher reads the image.
"""

from __future__ import annotations

import copy
import json
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LABEL_META_KEYS", "Reply", "RequestBudget", "RequestCapReached", "Teacher", "strip_label"]

LABEL_META_KEYS = ("true_label", "flipped")


def strip_label(sample: Mapping[str, Any]) -> dict:
    """A copy of ``sample`` without ``label`` and the label-revealing ``meta`` keys.

    ``meta`` keeps its type (JSON string or dict).

    >>> s = strip_label({"id": "a", "label": 2, "meta": '{"true_label": 2, "scene": []}'})
    >>> s
    {'id': 'a', 'meta': '{"scene": []}'}
    """
    out = {k: v for k, v in sample.items() if k != "label"}
    meta = out.get("meta")
    if isinstance(meta, str) and meta.strip():
        obj = json.loads(meta)
        for key in LABEL_META_KEYS:
            obj.pop(key, None)
        out["meta"] = json.dumps(obj, sort_keys=True)
    elif isinstance(meta, Mapping):
        out["meta"] = {k: copy.deepcopy(v) for k, v in meta.items() if k not in LABEL_META_KEYS}
    return out


@dataclass
class Reply:
    """One attempt's result: the raw text, or why there is none (``cause``), plus what it cost.

    ``cause`` names a failed attempt that produced no usable text (``timeout``,
    ``http_5xx``, ``bad_json``, ``empty_choices``, ``truncated``, …);
    ``retries`` counts transport retries by cause; tokens are ``None`` when unreported.
    """

    text: str | None = None
    cause: str | None = None
    requests: int = 0
    retries: Counter = field(default_factory=Counter)
    tokens_in: int | None = None
    tokens_out: int | None = None


class RequestCapReached(RuntimeError):
    """The per-run request cap (``distill.max_requests``) is spent."""


class RequestBudget:
    """A thread-safe per-run request counter; :meth:`take` raises once ``cap`` requests were made."""

    def __init__(self, cap: int | None = None):
        if cap is not None and cap < 1:
            raise ValueError(f"distill.max_requests must be >= 1 or null, got {cap}")
        self.cap, self.used = cap, 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.cap is not None and self.used >= self.cap:
                raise RequestCapReached(
                    f"distill.max_requests={self.cap} requests made in this run: stopped. Everything answered "
                    "so far is journaled; raise distill.max_requests (or run the same command again) to go on."
                )
            self.used += 1


class Teacher(ABC):
    """Writes judge outputs (``<think>…</think><answer>N</answer>``) for samples.

    Subclasses: this synthetic one, later an OpenAI-compatible endpoint or a
    local HF model. ``samples`` are schema rows passed through :func:`strip_label`
    (``id, images, query, response_1, response_2, category, source, meta``).
    """

    name: str = "teacher"
    #: True: :meth:`generate` takes batches of ``distill.batch_size`` (a local model);
    #: False: one sample per call, ``distill.concurrency`` calls at once (a remote endpoint).
    batched: bool = True
    #: An upper bound on concurrent calls (1 for a model on one device); None: no bound.
    max_concurrency: int | None = None
    #: The ``data=`` whose rows it can write for (checked by egt.config.validate before any stage); None: any.
    data_name: str | None = None

    @abstractmethod
    def generate(self, samples: list[dict], attempt: int) -> list[str]:
        """One raw output per sample, in order. ``attempt`` (0, 1, …) lets a retry
        differ from earlier tries; the same ``(sample, attempt)`` should give the
        same output when the teacher can be deterministic."""

    def answer(self, samples: list[dict], attempt: int, budget: RequestBudget | None = None) -> list[Reply]:
        """One :class:`Reply` per sample; the default wraps :meth:`generate` (no requests spent).
        May raise :class:`egt.data.schema.BadSampleError` for a sample it cannot send."""
        return [Reply(text=t) for t in self.generate(samples, attempt)]

    def check(self) -> None:
        """Fail early, before any work, when the teacher cannot work (e.g. an unreachable endpoint)."""

    def public_config(self) -> dict:
        """Settings that determine the outputs (for artifact keys); no secrets."""
        return {"name": self.name}
