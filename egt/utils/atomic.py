"""Writes a reader sees whole or not at all, the one place egt implements them.

Everything is written beside its target under a temporary name ``.NAME.tmp-PID-XXXXXXXX`` and renamed
into place (``os.replace``: atomic on one file system), so a killed process leaves either the old
file or directory or the new one, never half of the new one, plus a temporary that
``egt.artifacts.remove_debris`` recognises by that name and removes once its process is gone.
Files are fsynced before the rename. A directory target is replaced whole (the old one is removed
first, which is not atomic itself, but a reader that checks the new name never sees a partial one).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "atomic_path",
    "copy_file_atomic",
    "fsync_path",
    "load_saved_dataset",
    "remove_path",
    "replace_dir",
    "save_dataset_atomic",
    "temp_sibling",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_text_atomic",
]


def temp_sibling(path: str | Path) -> Path:
    """``.NAME.tmp-PID-XXXXXXXX`` beside ``path`` (unique per call: threads of one process do not collide)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_path(path: Path) -> None:
    """fsync a file (its data) or a directory (its entries: the renames in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path: Path, ignore_errors: bool = True) -> None:
    """Remove a file, a link or a directory tree if it is there (errors ignored unless ``ignore_errors=False``)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move a fully written ``src`` (file or directory) onto ``dst``, removing a directory already there."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write a file or a directory into; when the block ends without
    an exception it is fsynced (a file) and renamed onto ``path`` (replacing what is there), otherwise
    removed. The parent directory is created.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("whole")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('whole', ['a.txt'])
    >>> try:
    ...     with atomic_path(d / "a.txt") as tmp:
    ...         _ = tmp.write_text("half"); raise KeyboardInterrupt
    ... except KeyboardInterrupt: pass
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('whole', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if tmp.is_file():
            fsync_path(tmp)
        replace_dir(tmp, path)
    finally:
        remove_path(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """JSON (indent 2, sorted keys, ``default=str``) that readers see either old or whole."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_parquet_atomic(df: Any, path: str | Path) -> None:
    """``df.to_parquet(path, index=False)`` (a pandas DataFrame), atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def copy_file_atomic(src: str | Path, dst: str | Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def save_dataset_atomic(ds: Any, path: str | Path) -> Path:
    """``ds.save_to_disk`` (a ``datasets`` Dataset or DatasetDict) into a temporary directory, renamed
    into place. An empty Dataset, or an empty split of a DatasetDict (``data=r1_reward_rl`` has no SFT
    pool and no bench), is saved as one shard: the default sharding writes no Arrow file for it, and
    ``load_from_disk`` cannot read that back (IndexError in ``concat_tables``)."""
    from datasets import Dataset, DatasetDict

    kw: dict[str, Any] = {}
    if isinstance(ds, Dataset) and len(ds) == 0:
        kw = {"num_shards": 1}
    elif isinstance(ds, DatasetDict) and any(len(split) == 0 for split in ds.values()):
        kw = {"num_shards": {name: 1 for name, split in ds.items() if len(split) == 0}}
    with atomic_path(path) as tmp:
        ds.save_to_disk(str(tmp), **kw)
    return Path(path)


def load_saved_dataset(path: str | Path) -> Any:
    """``datasets.load_from_disk(path)``, also for a DatasetDict that an egt before the fix above saved
    with an empty split and no Arrow file for it: that split is read back empty, with its features
    (its ``dataset_info.json``), so a finished artifact of that kind is not rebuilt or lost."""
    from datasets import Dataset, DatasetDict, DatasetInfo, load_from_disk

    path = Path(path)
    dict_file = path / "dataset_dict.json"
    if not dict_file.is_file():
        return load_from_disk(str(path))
    splits = {}
    for name in json.loads(dict_file.read_text())["splits"]:
        state = json.loads((path / name / "state.json").read_text())
        if state.get("_data_files"):
            splits[name] = Dataset.load_from_disk(str(path / name))
        else:
            info = DatasetInfo.from_directory(str(path / name))
            splits[name] = Dataset.from_dict({k: [] for k in info.features}, features=info.features)
    return DatasetDict(splits)
