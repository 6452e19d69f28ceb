"""Real preference data onto egt's sample schema: any file or folder ``datasets`` reads, columns mapped.

A *source* is one table (``path``: a .jsonl / .json / .parquet file, a folder of them, a
``save_to_disk`` folder, or a Hub id when the machine has internet) and how to read it::

    {path: /data/rlaif_v.parquet, format: pairs, name: rlaif_v, image_root: /data/img,
     columns: {query: question, chosen: chosen, rejected: rejected, image: image}, limit: null}

Formats (``format:``, egt.data.formats, one module each): ``pairs`` (any table of a query, two
responses and which is better), ``r1_reward_rl`` (R1-Reward's RL set), and the paper's SFT releases
``rlaif_v``, ``rlhf_v``, ``povid``, ``wildvision_battle``, ``vlfeedback``, ``mm_rlhf``; an outside one by
``format: {_target_: your.module.Format}``.

Every row becomes ``id, images, query, response_1, response_2, label, category, source, meta``
(``meta`` records the file and row; for a folder also the shard file and the row in it). A bad row raises
:class:`SourceRowError` naming the file (the shard), the row in it, the id and the field, or, with
``on_bad_sample=skip``, is dropped and counted under its reason; rows excluded by design (:data:`EXCLUSIONS`)
are always dropped and counted apart. Reading the files: :mod:`egt.data.tables`.
Rows are converted with ``Dataset.map`` (Arrow-backed, written in batches), images embedded as
bytes, so memory does not grow with the number of rows.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import datasets

from egt.components import build
from egt.data.formats import DEFAULT_COLUMNS, EXCLUSIONS, DataFormat, RowRejected
from egt.data.mixture import source_name
from egt.data.schema import FEATURES, row_location, row_origin
from egt.data.tables import SourceFileError, Shards, load_table, read_table  # noqa: F401  (load_table: API)
from egt.errors import ConfigError

log = logging.getLogger(__name__)

_ERROR = "_egt_error"
_FEATURES = datasets.Features({**FEATURES, _ERROR: datasets.Value("string")})


class SourceRowError(ValueError):
    """A row of an outside data set that cannot become a sample: names the file, row, id and field."""

    def __init__(self, file: str, row: int, sample_id: Any, field: str, reason: str, detail: str = "") -> None:
        self.file, self.row, self.sample_id, self.field, self.reason = file, row, sample_id, field, reason
        more = f" ({detail})" if detail else ""
        super().__init__(
            f"{file}: row {row} (id {sample_id!r}): field {field!r}: {reason}{more}. "
            "Fix the row, map the column (data.sources.<split>[i].columns), or skip such rows "
            "(data.on_bad_sample=skip)"
        )


# ------------------------------------------------------------------ a source's key
def fingerprint(path: str, image_root: str | None = None, sample_bytes: int = 1 << 16) -> str:
    """A content fingerprint of a source for artifact keys: :func:`egt.artifacts.content_fingerprint` of
    its file or folder (names, sizes, sampled bytes), and the names and sizes of the files under
    ``image_root``. A Hub id is fingerprinted by name (no network here to ask for its revision)."""
    from egt.artifacts import content_fingerprint

    h = hashlib.sha256()
    p = Path(path).expanduser()
    h.update((content_fingerprint(p, sample_bytes) if p.exists() else f"hub:{path}").encode())
    if image_root and Path(image_root).expanduser().is_dir():
        root = Path(image_root).expanduser()
        for entry in sorted(_walk(root)):
            h.update(entry.encode())
    return h.hexdigest()[:16]


def _walk(root: Path):
    for dirpath, _, names in os.walk(root):
        for n in names:
            f = Path(dirpath) / n
            yield f"{f.relative_to(root)}\0{f.stat().st_size}"


# ------------------------------------------------------------------ one source
def _check_unique_ids(ids: list[str], metas: list[str], id_col: str | None) -> None:
    """A sample id that occurs twice is an error naming both rows' file (shard) and row."""
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise ValueError(
                f"{row_location(metas[i])}: sample id {sid!r} (column {id_col!r}) occurs again, first at "
                f"{row_location(metas[seen[sid]])}; egt keys its stages by sample id. Map a unique column "
                "(columns.id) or number the rows (columns: {id: null})"
            )
        seen[sid] = i


def data_format(spec: Mapping[str, Any], split: str = "") -> DataFormat:
    """The source's format (``format``: a built-in name, ``{name: …, <arguments>}`` or ``{_target_: …}``;
    default ``pairs``)."""
    if "pair_rule" in spec:
        raise ConfigError(
            "data.sources: pair_rule is the vlfeedback format's argument: write "
            "format: {name: vlfeedback, pair_rule: best_worst}"
        )
    return build(spec.get("format", "pairs"), DataFormat, f"data.sources.{split}.format", package="egt.data.formats")


def load_source(
    spec: Mapping[str, Any], split: str, on_bad_sample: str = "error", image_root: str | None = None, num_proc: int = 1
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """One source's rows on egt's schema, and its counts
    ``{"rows", "kept", "excluded": {reason: n}, "skipped": {reason: n}}``.

    Rows excluded by design (:data:`EXCLUSIONS`: ties, multi-turn battles, video rows, prompts without a
    rated pair) are always dropped and counted under ``excluded``. Raises :class:`SourceRowError` for the
    first bad row (:data:`REASONS`) unless ``on_bad_sample="skip"`` (then counted under ``skipped``). ``num_proc``
    processes convert contiguous shards of the rows (``Dataset.map``); the result is the same rows in
    the same order as with one.
    """
    path = str(spec["path"])
    fmt = data_format(spec, split)
    name = source_name(spec)
    root = spec.get("image_root") or image_root
    columns = {**DEFAULT_COLUMNS, **(spec.get("columns") or {})}
    table, shards = read_table(path, spec.get("split"), num_proc)
    procs = {"num_proc": min(num_proc, len(table))} if num_proc > 1 and len(table) > 1 else {}
    if spec.get("limit"):
        table = table.select(range(min(int(spec["limit"]), len(table))))
    category = spec.get("category")
    id_col = (spec.get("columns") or {}).get("id", fmt.id_column)
    shard_of = _shard_locator(path, shards)

    def one(row: dict[str, Any], idx: int) -> dict[str, Any]:
        sid = row.get(id_col) if id_col in row else None
        sid = str(sid) if sid not in (None, "") else f"{name}-{split}-{idx:08d}"
        meta = {"file": path, "row": idx, **shard_of(idx)}  # a single file's meta as it always was
        if fmt.release_id and row.get(fmt.release_id) not in (None, ""):
            meta["source_id"] = str(row[fmt.release_id])
        out = {
            "id": sid,
            "images": [],
            "query": "",
            "response_1": "",
            "response_2": "",
            "label": 1,
            "category": str(row.get(columns["category"]) or category or name)
            if columns.get("category") in row
            else str(category or name),
            "source": name,
            "meta": json.dumps(meta),
            _ERROR: "",
        }
        try:
            fields = fmt.convert(row, columns, root)
            if " ".join(fields["response_1"].split()) == " ".join(fields["response_2"].split()):
                raise RowRejected("response_2", "identical responses", "both responses are the same text")
            out.update(fields)
        except RowRejected as bad:
            out[_ERROR] = json.dumps([bad.field, bad.reason, bad.detail])
        return out

    converted = table.map(
        one,
        with_indices=True,
        remove_columns=table.column_names,
        features=_FEATURES,
        desc=f"[data] {name} ({split})",
        load_from_cache_file=False,
        **procs,
    )
    excluded, skipped = _drop_failed(converted, on_bad_sample)
    if excluded or skipped:
        converted = converted.filter(lambda e: e == "", input_columns=[_ERROR], load_from_cache_file=False)
        (log.warning if skipped else log.info)(
            "[data] %s (%s): of %d rows, excluded by design %s, skipped as bad %s",
            name,
            split,
            len(table),
            dict(excluded),
            dict(skipped),
        )
    converted = converted.remove_columns(_ERROR).cast(FEATURES)
    _check_unique_ids(converted["id"], converted["meta"], id_col)
    return converted, {"rows": len(table), "kept": len(converted), "excluded": dict(excluded), "skipped": dict(skipped)}


def _drop_failed(converted: datasets.Dataset, on_bad_sample: str) -> tuple[Counter[str], Counter[str]]:
    """The rows that did not convert, counted by reason: (excluded by design, skipped as bad). Raises
    :class:`SourceRowError` for the first bad row unless ``on_bad_sample="skip"``; exclusions never raise."""
    errors = converted.filter(lambda e: e != "", input_columns=[_ERROR], load_from_cache_file=False)
    excluded: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    first_bad = None
    for i, e in enumerate(errors[_ERROR] if len(errors) else []):
        reason = json.loads(e)[1]
        if reason in EXCLUSIONS:
            excluded[reason] += 1
        else:
            skipped[reason] += 1
            first_bad = i if first_bad is None else first_bad
    if first_bad is not None and on_bad_sample != "skip":
        row = errors[first_bad]
        field, reason, detail = json.loads(row[_ERROR])
        meta = json.loads(row["meta"])
        file, line = row_origin(meta)  # the shard and the row in it, for a folder
        raise SourceRowError(file, line, meta.get("source_id", row["id"]), field, reason, detail)
    return excluded, skipped


def _shard_locator(path: str, shards: Shards | None):
    """``idx -> {"shard": file relative to the folder, "shard_row": row in it}`` for a folder of files;
    ``{}`` for a single file (its meta stays ``{"file", "row"}``, byte for byte as before)."""
    if not shards:
        return lambda idx: {}
    starts = [0]
    for _, n in shards:
        starts.append(starts[-1] + n)
    names = [os.path.relpath(f, path) for f, _ in shards]

    def locate(idx: int) -> dict[str, Any]:
        k = bisect.bisect_right(starts, idx) - 1
        return {"shard": names[k], "shard_row": idx - starts[k]}

    return locate


def build_split(
    specs: list[Mapping[str, Any]], split: str, on_bad_sample: str, image_root: str | None, num_proc: int = 1
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Every source of one split, concatenated in order; per-source counts."""
    parts, counts = [], {}
    for spec in specs:
        ds, c = load_source(spec, split, on_bad_sample, image_root, num_proc)
        counts[source_name(spec)] = c
        parts.append(ds)
    if not parts:
        return datasets.Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES), counts
    return (datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]), counts
