"""Reading an outside table (a .jsonl / .json / .parquet file, a folder of them, a ``save_to_disk`` folder
or a Hub id) as a ``datasets.Dataset``, for :mod:`egt.data.sources`.

Three things ``datasets.load_dataset`` alone gets wrong for egt:

- **Stale rows.** Its cache of a local file is keyed by path and mtime, so a file rewritten with its mtime
  kept (``cp -p``, ``rsync -a``, ``tar x``) is served from the old cache. egt reads local files into a
  cache folder of its own, keyed by each file's size, mtime, ctime (which no copy tool can set back) and
  content fingerprint: a changed file always gets a fresh cache; an unchanged one reuses it.
- **Errors without a file.** A truncated file gives ``ArrowInvalid: Parquet magic bytes not found`` or
  ``DatasetGenerationError``: egt raises :class:`SourceFileError` naming the file (the shard) and, for
  JSON, the first line that does not parse.
- **Shards.** A folder's rows are numbered across its files; :func:`read_table` also gives each file's
  row count, so a row can be named by its shard and its row there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import datasets

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
Shards = list[tuple[str, int]]  # (file, rows) per file of a folder, in the table's order


class SourceFileError(ValueError):
    """An outside data file that cannot be read as a table: names the file and, where known, the line."""

    def __init__(self, file: str, reason: str, line: int | None = None) -> None:
        self.file, self.line = file, line
        where = file if line is None else f"{file}: line {line}"
        super().__init__(f"{where}: {reason}. Is the file complete (a download or copy cut short)?")


def load_table(path: str, split: str | None = None, num_proc: int = 1) -> datasets.Dataset:
    """The rows of ``path`` as a ``datasets.Dataset`` (Arrow-backed, memory-mapped): :func:`read_table`."""
    return read_table(path, split, num_proc)[0]


def read_table(path: str, split: str | None = None, num_proc: int = 1) -> tuple[datasets.Dataset, Shards | None]:
    """The rows of ``path``, and for a folder of files each file's row count (else None).

    .jsonl / .json / .parquet files (or a folder of them) go through ``load_dataset`` (a folder's files
    read by up to ``num_proc`` processes) into egt's own cache folder (module docstring), a
    ``save_to_disk`` folder through ``load_from_disk`` (``split`` picks one of a DatasetDict), and anything
    else is taken as a Hub id. Raises FileNotFoundError for a local path that does not exist and
    :class:`SourceFileError` for a file that cannot be read.
    """
    p = Path(path).expanduser()
    if p.is_file():
        builder = BUILDERS.get(p.suffix.lower())
        if builder is None:
            raise ValueError(f"{p}: cannot read a {p.suffix!r} file; use .jsonl, .json or .parquet")
        return _load(builder, [p], str(p), None), None
    if p.is_dir():
        if (p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(p))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded[split or next(iter(loaded))]
            return loaded, None
        for suffix, builder in BUILDERS.items():
            files = [Path(f) for f in sorted(str(f) for f in p.rglob(f"*{suffix}"))]
            if files:
                table = _load(
                    builder, files, [str(f) for f in files], min(num_proc, len(files)) if num_proc > 1 else None
                )
                return table, shard_rows(files, builder, len(table))
        raise FileNotFoundError(f"{p} holds no .jsonl, .json or .parquet file and is not a save_to_disk folder")
    if path.startswith(("/", ".", "~")) or os.sep in path and not re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        raise FileNotFoundError(f"data source {path} does not exist")
    return datasets.load_dataset(path, split=split or "train"), None  # a Hub id


def _load(builder: str, files: list[Path], data_files: str | list[str], num_proc: int | None) -> datasets.Dataset:
    """``load_dataset`` of local files into :func:`cache_dir`; a file it cannot read: SourceFileError."""
    try:
        return datasets.load_dataset(
            builder, data_files=data_files, split="train", num_proc=num_proc, cache_dir=cache_dir(files)
        )
    except Exception as exc:  # noqa: BLE001 — find the file and line, whatever datasets / arrow raised
        for f in files:
            check_file(f, builder)
        cause = exc.__cause__ or exc
        what = files[0] if len(files) == 1 else files[0].parent
        raise SourceFileError(
            str(what),
            f"cannot be read as {builder} ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0][:300] if str(cause) else ''})",
        ) from exc


def cache_dir(files: list[Path]) -> str:
    """egt's cache folder for these files under ``HF_DATASETS_CACHE/egt_tables``, keyed by each file's
    resolved path, size, mtime, ctime and :func:`egt.artifacts.content_fingerprint`: any rewrite changes
    the ctime, so no stale rows; an untouched file reuses its cache (a stat and ~200 kB read per file)."""
    from egt.artifacts import content_fingerprint

    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(
            f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{content_fingerprint(f)}\n".encode()
        )
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "egt_tables" / h.hexdigest()[:16])


def check_file(f: Path, builder: str) -> None:
    """Raise :class:`SourceFileError` when ``f`` is not a readable table: a parquet file without its footer
    (truncated), or the first line of JSON that does not parse."""
    if builder == "parquet":
        import pyarrow.parquet as pq

        try:
            pq.read_metadata(f)
        except Exception as exc:  # noqa: BLE001 — ArrowInvalid, OSError: all mean the same to the user
            raise SourceFileError(str(f), f"not a readable parquet file ({exc})") from None
        return
    line, why = json_error(f)
    if why is not None:
        raise SourceFileError(str(f), f"not valid JSON ({why})", line)


def json_error(f: Path) -> tuple[int | None, str | None]:
    """(line, message) of the first JSON error in ``f`` — one document when it starts with ``[``, else
    JSON lines — or (None, None) when it parses."""
    with open(f, "rb") as fh:
        document = fh.read(4096).lstrip()[:1] == b"["
    if document:
        try:
            json.loads(f.read_bytes())
        except ValueError as exc:
            return getattr(exc, "lineno", None), getattr(exc, "msg", str(exc))
        return None, None
    with open(f, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    json.loads(line)
                except ValueError as exc:
                    return n, getattr(exc, "msg", str(exc))
    return None, None


def shard_rows(files: list[Path], builder: str, total: int) -> Shards | None:
    """Each file's row count (parquet: its footer; JSON: the list's length or the non-blank lines), or None
    when they do not add up to ``total`` (then rows are named by the folder and their row in it)."""
    import pyarrow.parquet as pq

    counts = []
    for f in files:
        if builder == "parquet":
            n = pq.read_metadata(f).num_rows
        else:
            with open(f, "rb") as fh:
                document = fh.read(4096).lstrip()[:1] == b"["
            if document:
                rows = json.loads(f.read_bytes())
                n = len(rows) if isinstance(rows, list) else -1
            else:
                with open(f, "rb") as fh:
                    n = sum(1 for line in fh if line.strip())
        counts.append((str(f), n))
    return counts if sum(n for _, n in counts) == total else None
