"""The SFT encoding cache: every sample's processor output computed once, kept on disk as Arrow IPC
files and read memory-mapped, so neither time to first step nor memory grows with the data set.

Layout (``<artifacts>/sft_encodings/<key>/``): ``part-00000.arrow``, … one file per
:data:`ROWS_PER_PART` rows of the joined data set (pool ⋈ trajectories, in its order). A part is
written to a temporary beside ``part-NNNNN.arrow`` (egt.utils.atomic) and renamed once whole, so a
killed build resumes at the missing parts and a torn part is never read; ``_SUCCESS.json`` comes
last (:mod:`egt.artifacts`). Under several processes rank r builds parts r, r+W, r+2W, …; every rank
waits for all of them.

Per row: ``ok``; for a good row ``target_tokens``, ``tokens``, ``image_tokens`` and (``tensors``, the
default) every tensor of :meth:`ChatEncoder.encode_example` as its raw bytes (column ``<name>``) and
shape (``<name>.shape``), the dtypes in the schema metadata, so reading gives back bit-identical
tensors; for a bad row its :class:`BadSampleError` (id, field, reason, kind), raised or skipped when
the cache is read (``data.on_bad_sample``), so the key does not depend on that setting. Without
``tensors`` (``sft.cache_tensors=false``: real pixel budgets, where pixel values are ~23 MB per
1M-pixel image) the cache holds only that check, and samples are encoded again at every step.

The key is what the encodings depend on: the processor as loaded (tokenizer, chat template, image
processor with its pixel budget, library versions), the prompt template, ``sft.max_length``, the
pool (the data artifact's key) and the trajectories' text. Bump :data:`VERSION` when
:mod:`egt.data.encode` changes what it returns.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import tokenizers
import torch
import transformers
from datasets import Dataset

from egt import distributed
from egt.artifacts import ArtifactStore, canonical_json, make_key
from egt.data.encode import IGNORE, ChatEncoder
from egt.data.schema import BadSampleError
from egt.utils.atomic import atomic_path
from egt.utils.progress import Progress

log = logging.getLogger(__name__)
VERSION = 1
STAGE = "sft_encodings"
ROWS_PER_PART = 2048  # the unit of resumption and of the ranks' shares
BATCH_ROWS, BATCH_BYTES = 256, 64 << 20  # a record batch is written at whichever comes first
META = (
    ("ok", pa.bool_()),
    ("target_tokens", pa.int32()),
    ("tokens", pa.int32()),
    ("image_tokens", pa.int32()),
    ("bad_id", pa.string()),
    ("bad_field", pa.string()),
    ("bad_reason", pa.string()),
    ("bad_kind", pa.string()),
)


def _sha(obj: Any) -> str:
    return hashlib.sha256((obj if isinstance(obj, str) else canonical_json(obj)).encode()).hexdigest()[:16]


def processor_identity(encoder: ChatEncoder) -> dict[str, str]:
    """What of the processor decides the encodings, as loaded (a pixel budget given in the config is
    already in its image processor)."""
    proc, tok = encoder.processor, encoder.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    image = getattr(proc, "image_processor", None)
    return {
        "processor": type(proc).__name__,
        "tokenizer": type(tok).__name__,
        "vocab": _sha(backend.to_str() if backend is not None else sorted(tok.get_vocab().items())),
        "chat_template": _sha([getattr(proc, "chat_template", None), getattr(tok, "chat_template", None)]),
        "image_processor": _sha(image.to_dict()) if image is not None else "none",
        "end_text": encoder.end_text,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def content_digest(joined: Dataset, block: int = 10_000) -> str:
    """sha256 of the joined rows' ids and trajectory texts, in order (the rest of a row is the pool's,
    which the data artifact's key stands for)."""
    h = hashlib.sha256()
    cols = joined.select_columns(["id", "target"])
    for start in range(0, len(cols), block):
        part = cols[start : start + block]
        h.update(canonical_json([part["id"], part["target"]]).encode())
    return h.hexdigest()[:16]


def part_name(k: int) -> str:
    return f"part-{k:05d}.arrow"


def _part_rows(k: int, n: int) -> range:
    return range(k * ROWS_PER_PART, min((k + 1) * ROWS_PER_PART, n))


# ------------------------------------------------------------------ writing
def _encode_row(joined: Dataset, i: int, encoder: ChatEncoder, raise_bad: bool) -> dict[str, Any]:
    row = joined[i]
    try:
        ex = encoder.encode_example(row, row["target"])
    except BadSampleError as e:
        if raise_bad:
            raise
        return {
            "ok": False,
            "bad_id": None if e.sample_id is None else str(e.sample_id),
            "bad_field": e.field,
            "bad_reason": e.reason,
            "bad_kind": e.kind,
        }
    image_id = encoder.image_token_id
    return {
        "ok": True,
        "index": i,
        "target_tokens": int((ex["labels"] != IGNORE).sum()),
        "tokens": len(ex["input_ids"]),
        "image_tokens": int((ex["input_ids"] == image_id).sum()) if image_id is not None else 0,
        "tensors": ex,
    }


def _schema(example: dict[str, torch.Tensor] | None) -> pa.Schema:
    """Meta columns, then a bytes and a shape column per tensor of ``example`` (dtypes in the metadata)."""
    fields = [pa.field(name, kind) for name, kind in META]
    dtypes = {}
    for name, t in (example or {}).items():
        fields += [pa.field(name, pa.large_binary()), pa.field(f"{name}.shape", pa.list_(pa.int64()))]
        dtypes[name] = str(t.dtype).removeprefix("torch.")
    return pa.schema(fields, metadata={"dtypes": json.dumps(dtypes)})


def _first_example(joined: Dataset, encoder: ChatEncoder) -> dict[str, torch.Tensor] | None:
    """The first good row's encoding: what the schema is made from (the same on every rank)."""
    for i in range(len(joined)):
        row = _encode_row(joined, i, encoder, raise_bad=False)
        if row["ok"]:
            return row["tensors"]
    return None


def _record_batch(rows: list[dict[str, Any]], schema: pa.Schema, dtypes: dict[str, str]) -> pa.RecordBatch:
    cols: dict[str, list] = {name: [r.get(name) for r in rows] for name, _ in META}
    for r in rows:
        tensors = r.get("tensors") or {}
        odd = {k: str(v.dtype) for k, v in tensors.items() if dtypes.get(k) != str(v.dtype).removeprefix("torch.")}
        if odd:
            raise ValueError(
                f"row {r['index']} encodes to {odd}, unlike the first good row "
                f"({dtypes}): the encoding cache needs one layout; set sft.cache_encodings=false"
            )
    for name in dtypes:
        ts = [(r.get("tensors") or {}).get(name) for r in rows]
        cols[name] = [
            None if t is None else t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in ts
        ]
        cols[f"{name}.shape"] = [None if t is None else list(t.shape) for t in ts]
    return pa.RecordBatch.from_pydict(cols, schema=schema)


def _write_part(
    path: Path, k: int, joined: Dataset, encoder: ChatEncoder, schema: pa.Schema, raise_bad: bool, bar: Progress
) -> None:
    """Encode part ``k``'s rows into ``part-k.arrow`` (a temporary renamed once whole)."""
    dtypes = json.loads(schema.metadata[b"dtypes"])
    with atomic_path(path / part_name(k)) as tmp:
        with open(tmp, "wb") as f:
            with pa.ipc.new_file(f, schema) as writer:
                rows, size = [], 0
                for i in _part_rows(k, len(joined)):
                    rows.append(_encode_row(joined, i, encoder, raise_bad))
                    if not dtypes:  # a check-only cache (or no good row yet): nothing of the tensors is kept
                        rows[-1].pop("tensors", None)
                    size += sum(t.nbytes for t in (rows[-1].get("tensors") or {}).values())
                    if len(rows) >= BATCH_ROWS or size >= BATCH_BYTES:
                        writer.write_batch(_record_batch(rows, schema, dtypes))
                        rows, size = [], 0
                    bar.update(1)
                if rows:
                    writer.write_batch(_record_batch(rows, schema, dtypes))


def build(path: Path, joined: Dataset, encoder: ChatEncoder, raise_bad: bool = False, tensors: bool = True) -> None:
    """Write this rank's missing parts (parts k with k % world_size == rank). ``raise_bad``: stop at
    the first bad sample (one process only: under several, every rank must reach the barrier);
    ``tensors``: keep the processor's tensors, not only the check."""
    n_parts = math.ceil(len(joined) / ROWS_PER_PART)
    rank, world = distributed.rank(), distributed.world_size()
    have = {k for k in range(n_parts) if (path / part_name(k)).exists()}
    if have:
        log.info("[sft] encoding cache: resuming, %d of %d parts already built", len(have), n_parts)
    mine = [k for k in range(n_parts) if k % world == rank and k not in have]
    if not mine:
        return
    schema = _schema(_first_example(joined, encoder) if tensors else None)
    share = f" (rank 0's share of {world})" if world > 1 else ""
    todo = sum(len(_part_rows(k, len(joined))) for k in mine)
    with Progress(todo, f"[sft] encoding cache{share}", log, enabled=distributed.is_main()) as bar:
        for k in mine:
            _write_part(path, k, joined, encoder, schema, raise_bad, bar)


def open_or_build(
    store: ArtifactStore,
    encoder: ChatEncoder,
    joined: Dataset,
    conf: dict[str, Any],
    upstream: dict[str, str],
    on_bad_sample: str,
    tensors: bool = True,
) -> "EncodingCache":
    """The finished cache for these encodings, built first when there is none (every rank takes part)."""
    conf = {**conf, "processor": processor_identity(encoder), "rows_per_part": ROWS_PER_PART, "tensors": tensors}
    upstream = {**upstream, "rows": content_digest(joined)}
    key = make_key(STAGE, conf, upstream=upstream, version=VERSION)
    with store.open(STAGE, key, ranks="all") as art:
        if not art.reused:
            build(
                art.path,
                joined,
                encoder,
                raise_bad=on_bad_sample == "error" and distributed.world_size() == 1,
                tensors=tensors,
            )
            distributed.barrier()  # every rank's parts are written
            cache = EncodingCache(art.path, rows=len(joined))
            art.finish(cache.summary(), {"config": conf, "upstream": upstream})
    cache = EncodingCache(art.path, rows=len(joined))
    log.info("[sft] encoding cache %s %s: %s", "reused" if art.reused else "built", art.path, cache.summary())
    return cache


# ------------------------------------------------------------------ reading
class EncodingCache:
    """Rows of a built cache, memory-mapped: ``cache[i]`` is ``encode_example`` of joined row ``i``
    (bit-identical; ``has_tensors`` false: a check-only cache, ``{}``); ``ok`` [N] bool,
    ``target_tokens`` [N] int (0 for bad rows), :meth:`error`."""

    def __init__(self, path: str | Path, rows: int | None = None):
        self.path = Path(path)
        self.files = sorted(self.path.glob("part-*.arrow"))
        if [f.name for f in self.files] != [part_name(k) for k in range(len(self.files))]:
            raise RuntimeError(f"encoding cache {self.path}: parts missing among {[f.name for f in self.files]}")
        self._tables: dict[int, pa.Table] = {}
        lengths = [self._table(j).num_rows for j in range(len(self.files))]
        self.starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).tolist()
        if rows is not None and self.starts[-1] != rows:
            raise RuntimeError(f"encoding cache {self.path} holds {self.starts[-1]} rows, not {rows}: incomplete")
        self.ok = self._column("ok").astype(bool)
        self.target_tokens = self._column("target_tokens", 0).astype(np.int64)
        self.image_tokens = self._column("image_tokens", 0).astype(np.int64)
        meta = self._table(0).schema.metadata if self.files else None
        self.dtypes: dict[str, str] = json.loads(meta[b"dtypes"]) if meta else {}
        self.has_tensors = bool(self.dtypes)

    def _table(self, j: int) -> pa.Table:
        if j not in self._tables:  # opened lazily, once per process (DataLoader workers open their own)
            self._tables[j] = pa.ipc.open_file(pa.memory_map(str(self.files[j]), "r")).read_all()
        return self._tables[j]

    def _column(self, name: str, fill: Any = None) -> np.ndarray:
        parts = [self._table(j).column(name) for j in range(len(self.files))]
        parts = [c.fill_null(fill) if fill is not None else c for c in parts]
        return np.concatenate([c.to_numpy() for c in parts]) if parts else np.zeros(0)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tables": {}}  # memory maps are not pickled; workers map the files again

    def __len__(self) -> int:
        return self.starts[-1]

    def _locate(self, i: int) -> tuple[pa.Table, int]:
        j = bisect.bisect_right(self.starts, i) - 1
        return self._table(j), i - self.starts[j]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not self.ok[i]:
            raise self.error(i)
        table, off = self._locate(i)
        out = {}
        for name, dtype in self.dtypes.items():
            value = table.column(name)[off]
            if not value.is_valid:
                continue
            shape = table.column(f"{name}.shape")[off].as_py()
            data = torch.from_numpy(np.frombuffer(value.as_buffer(), dtype=np.uint8).copy())
            out[name] = data.view(getattr(torch, dtype)).reshape(shape)
        return out

    def error(self, i: int) -> BadSampleError:
        """The bad sample error of row ``i`` (as encoding it raised)."""
        table, off = self._locate(i)
        get = {n: table.column(f"bad_{n}")[off].as_py() for n in ("id", "field", "reason", "kind")}
        return BadSampleError(get["id"], get["field"], get["reason"], kind=get["kind"])

    def image_token_stats(self) -> dict[str, float]:
        """``{"image_tokens_mean", "image_tokens_max"}`` per prompt over the good rows."""
        good = self.image_tokens[self.ok]
        return {
            "image_tokens_mean": round(float(good.mean()), 1) if len(good) else 0.0,
            "image_tokens_max": int(good.max()) if len(good) else 0,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "rows": len(self),
            "bad": int((~self.ok).sum()),
            "parts": len(self.files),
            "megabytes": round(sum(f.stat().st_size for f in self.files) / 2**20, 1),
        }
