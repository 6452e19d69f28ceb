"""The sample schema (docs/design.md §2.1) as HF ``datasets`` Features, its validation, and
the seeded per-sample randomisation of response order.

A sample: ``id, images (≥1), query, response_1, response_2, label ∈ {1, 2}``
(index of the better response *as shown*), ``category, source, meta`` (a JSON
object serialised to a string).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

import datasets
import numpy as np
from PIL import Image

__all__ = [
    "FEATURES",
    "REQUIRED_FIELDS",
    "BadSampleError",
    "check_image",
    "meta_dict",
    "row_location",
    "row_origin",
    "randomize_order",
    "swap_sample",
    "stable_hash",
    "validate_dataset",
    "validate_sample",
]

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "query": datasets.Value("string"),
        "response_1": datasets.Value("string"),
        "response_2": datasets.Value("string"),
        "label": datasets.Value("int8"),
        "category": datasets.Value("string"),
        "source": datasets.Value("string"),
        "meta": datasets.Value("string"),
    }
)

REQUIRED_FIELDS = ("id", "images", "query", "response_1", "response_2", "label")
_TEXT_FIELDS = ("query", "response_1", "response_2")


class BadSampleError(ValueError):
    """A sample that breaks the schema; the message names the sample id and field."""

    def __init__(self, sample_id: Any, field: str, reason: str, kind: str | None = None) -> None:
        self.sample_id = sample_id
        self.field = field
        self.reason = reason
        self.kind = kind or field  # what a skip is counted under (the reason text is row-specific)
        super().__init__(f"bad sample {sample_id!r}: field {field!r}: {reason}")


def stable_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that is stable across processes (unlike ``hash()``).

    >>> stable_hash("world-rl-000001") == stable_hash("world-rl-000001")
    True
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def check_image(image: Any) -> str | None:
    """``None`` if ``image`` is readable, else why not."""
    try:
        if isinstance(image, Image.Image):
            if image.width <= 0 or image.height <= 0:
                return "empty image"
            image.getpixel((0, 0))  # forces decoding of lazily loaded images
            return None
        if isinstance(image, Mapping):
            data, path = image.get("bytes"), image.get("path")
            src: Any = io.BytesIO(data) if data else path
        elif isinstance(image, (bytes, bytearray)):
            src = io.BytesIO(image)
        elif isinstance(image, str):
            src = image
        else:
            return f"unsupported image type {type(image).__name__}"
        if not src:
            return "image has neither bytes nor path"
        with Image.open(src) as im:
            im.verify()
    except Exception as exc:  # PIL raises many types for broken files
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def validate_sample(row: Mapping[str, Any]) -> None:
    """Raise :class:`BadSampleError` if ``row`` breaks the schema.

    Checks: required fields present; label in {1, 2}; query and responses
    non-empty; at least one image and every image readable (PIL ``verify``);
    ``meta`` (if given and non-empty) is a JSON object.

    >>> validate_sample({"id": "x", "images": [], "query": "q", "response_1": "a",
    ...                  "response_2": "b", "label": 1})
    Traceback (most recent call last):
    ...
    egt.data.schema.BadSampleError: bad sample 'x': field 'images': no image
    """
    sid = row.get("id", "<no id>")
    for name in REQUIRED_FIELDS:
        if name not in row or row[name] is None:
            raise BadSampleError(sid, name, "missing")
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label not in (1, 2):
        raise BadSampleError(sid, "label", f"must be 1 or 2, got {label!r}")
    for name in _TEXT_FIELDS:
        if not isinstance(row[name], str) or not row[name].strip():
            raise BadSampleError(sid, name, "empty or not a string")
    images = row["images"]
    if isinstance(images, (Image.Image, Mapping, str, bytes)):
        images = [images]
    if len(images) == 0:
        raise BadSampleError(sid, "images", "no image")
    for k, image in enumerate(images):
        why = check_image(image)
        if why is not None:
            raise BadSampleError(sid, "images", f"image {k}: {why}")
    meta = row.get("meta")
    if meta not in (None, ""):
        try:
            parsed = json.loads(meta) if isinstance(meta, str) else None
        except json.JSONDecodeError as exc:
            raise BadSampleError(sid, "meta", f"not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise BadSampleError(sid, "meta", "must be a JSON object string")


def meta_dict(meta: Any) -> dict:
    """A sample's ``meta`` as a dict: the JSON object string the schema stores, an
    already-parsed dict, or ``{}`` for a missing/empty one.

    >>> meta_dict('{"kind": "count"}'), meta_dict({"kind": "exist"}), meta_dict(None), meta_dict("")
    ({'kind': 'count'}, {'kind': 'exist'}, {}, {})
    """
    return json.loads(meta) if isinstance(meta, str) and meta else (meta or {})


def row_origin(meta: Any) -> tuple[str, int] | None:
    """(file, row in it) of an outside sample, as its ``meta`` records it (egt.data.sources): the shard and
    its row for a folder of shards; None for a sample without that record (or a broken meta).

    >>> row_origin({"file": "/d", "row": 9, "shard": "b.parquet", "shard_row": 2}), row_origin("{}")
    (('/d/b.parquet', 2), None)
    """
    try:
        m = meta_dict(meta) if isinstance(meta, (str, Mapping)) or meta is None else {}
    except json.JSONDecodeError:  # a broken meta is its own bad field; it names no place
        return None
    if "shard" in m:
        return os.path.join(str(m.get("file", "")), str(m["shard"])), m.get("shard_row")
    return (m["file"], m.get("row")) if "file" in m else None


def row_location(meta: Any) -> str:
    """``<file>: row <n>`` of :func:`row_origin`; ``""`` for a sample without that record.

    >>> row_location('{"file": "/d/x.jsonl", "row": 7}'), row_location({"file": "/d", "row": 9, "shard": "b.parquet",
    ...                                                                    "shard_row": 2})
    ('/d/x.jsonl: row 7', '/d/b.parquet: row 2')
    """
    origin = row_origin(meta)
    return f"{origin[0]}: row {origin[1]}" if origin else ""


def validate_dataset(
    ds: datasets.Dataset, on_bad_sample: Literal["error", "skip"] = "error"
) -> tuple[datasets.Dataset, dict]:
    """Validate every row; return the clean dataset and counts.

    Counts: ``{"checked": n, "skipped": k, "reasons": {field: count}}``.
    ``on_bad_sample="error"`` raises the first :class:`BadSampleError`.
    Images are checked from their encoded bytes (no full decode).
    """
    if on_bad_sample not in ("error", "skip"):
        raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
    raw = ds
    if "images" in ds.column_names and isinstance(ds.features["images"], datasets.List):
        inner = ds.features["images"].feature
        if isinstance(inner, datasets.Image) and inner.decode:
            raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    keep: list[int] = []
    reasons: Counter[str] = Counter()
    for i, row in enumerate(raw):
        try:
            validate_sample(row)
        except BadSampleError as err:
            if on_bad_sample == "error":
                where = row_location(row.get("meta")) if "meta" in row else ""
                if where:  # an outside sample: name its file (shard) and row too
                    raise BadSampleError(err.sample_id, err.field, f"{err.reason} ({where})", err.kind) from None
                raise
            reasons[err.field] += 1
            continue
        keep.append(i)
    stats = {"checked": len(ds), "skipped": len(ds) - len(keep), "reasons": dict(reasons)}
    clean = ds if len(keep) == len(ds) else ds.select(keep)
    return clean, stats


def _swap_decision(seed: int, sample_id: str) -> bool:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, stable_hash(str(sample_id))])
    return bool(rng.random() < 0.5)


def _swap_meta(meta: str | None) -> str | None:
    if not meta:
        return meta
    obj = json.loads(meta)
    if isinstance(obj.get("true_label"), int) and obj["true_label"] in (1, 2):
        obj["true_label"] = 3 - obj["true_label"]
    claims = obj.get("claims")
    if isinstance(claims, list) and len(claims) == 2:  # per-response, in shown order
        obj["claims"] = claims[::-1]
    return json.dumps(obj, sort_keys=True)


def swap_sample(sample: dict) -> dict:
    """The sample shown in the other response order: response_1/response_2 exchanged, the label flipped,
    ``meta`` remapped as :func:`randomize_order` does (the probe's ``probe.both_orders``).

    >>> s = swap_sample({"id": "x", "response_1": "a", "response_2": "b", "label": 1,
    ...                  "meta": '{"true_label": 2}'})
    >>> s["response_1"], s["response_2"], s["label"], s["meta"]
    ('b', 'a', 2, '{"true_label": 1}')
    """
    out = dict(sample)
    out["response_1"], out["response_2"] = sample["response_2"], sample["response_1"]
    out["label"] = 3 - int(sample["label"])
    if "meta" in sample:
        out["meta"] = _swap_meta(sample["meta"])
    return out


def randomize_order(ds: datasets.Dataset, seed: int) -> tuple[datasets.Dataset, dict]:
    """Swap ``response_1``/``response_2`` per sample with a seeded coin.

    The coin depends only on ``(seed, stable_hash(id))``, so it is the same in
    every process and for every dataset size. A swapped sample gets
    ``label -> 3 - label``; in ``meta`` its ``true_label`` is remapped the same way
    and a 2-element ``claims`` list (one entry per shown response) is reversed.

    Returns the new dataset and the balance ``{"label_1", "label_2", "swapped"}``.
    """
    swaps = [_swap_decision(seed, sid) for sid in ds["id"]]
    has_meta = "meta" in ds.column_names
    cols = ["response_1", "response_2", "label"] + (["meta"] if has_meta else [])

    def _apply(batch: dict, indices: list[int]) -> dict:
        out = {c: list(batch[c]) for c in cols}
        for j, idx in enumerate(indices):
            if not swaps[idx]:
                continue
            out["response_1"][j], out["response_2"][j] = batch["response_2"][j], batch["response_1"][j]
            out["label"][j] = 3 - batch["label"][j]
            if has_meta:
                out["meta"][j] = _swap_meta(batch["meta"][j])
        return out

    new = _map_cols(ds, cols, _apply)
    labels = np.asarray(new["label"])
    balance = {
        "label_1": int((labels == 1).sum()),
        "label_2": int((labels == 2).sum()),
        "swapped": int(sum(swaps)),
    }
    return new, balance


def _map_cols(ds: datasets.Dataset, cols: list[str], fn) -> datasets.Dataset:
    """Batched map over ``cols`` only, so images are never decoded."""

    def _wrapped(*args):
        *values, indices = args
        return fn(dict(zip(cols, values)), indices)

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a per-sample coin is not worth a progress bar
    try:
        return ds.map(
            _wrapped,
            input_columns=cols,
            with_indices=True,
            batched=True,
            load_from_cache_file=False,
            features=ds.features,
        )
    finally:
        if not quiet:
            datasets.enable_progress_bars()
