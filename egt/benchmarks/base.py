"""The :class:`Benchmark` contract: load a public release into schema-like items, score records.

An *item* is a dict close to the sample schema (egt.data.schema), in the
benchmark's own order before any presentation swap::

    id          unique within the benchmark (a repeated source id gets "#2", "#3", …)
    group       the source id (MM-RLHF-RewardBench's Acc+ groups pairs by it)
    category    one of the benchmark's ``categories``
    images      list of image references: a path, raw bytes, a {"bytes", "path"} dict or a PIL image;
                opened only when the item is generated (:func:`open_images`)
    query, response_1, response_2
    label       1 or 2, the better response as stored
    source      "file:row" for error messages

How the pair is *shown* (``order``) and what an unparsed output counts as
(``on_parse_failure``) are class attributes, so each benchmark is scored the way
its authors score it; :meth:`Benchmark.score` gives the official metrics.
"""

from __future__ import annotations

import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Optional

from PIL import Image

from egt.benchmarks import metrics as M
from egt.data.schema import BadSampleError, stable_hash
from egt.utils.images import to_rgb

ORDERS = ("as_given", "random_swap")
PARSE_POLICIES = ("exclude", "coin_flip", "wrong")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


class BenchmarkDataError(ValueError):
    """A problem with a benchmark's files; the message names the file (and row when there is one)."""

    def __init__(self, file: Any, row: Optional[int], reason: str, kind: Optional[str] = None) -> None:
        self.file, self.row, self.reason = str(file), row, reason
        self.kind = kind or reason.split(":")[0][:60]  # what a skip is counted under (groups across rows)
        where = f"{file}" + (f", row {row}" if row is not None else "")
        super().__init__(f"{where}: {reason}")


class Benchmark(ABC):
    """One public benchmark. Subclasses set the class attributes and implement :meth:`load_items`."""

    name: ClassVar[str] = ""  # egt's own: the module's name (egt/benchmarks/<name>.py; egt.components)
    version: ClassVar[int] = 1  # bump when loading or scoring changes
    order: ClassVar[str] = "as_given"  # as_given | random_swap (seeded, per item)
    on_parse_failure: ClassVar[str] = "wrong"  # exclude | coin_flip | wrong
    coin_seed: ClassVar[int] = 123
    categories: ClassVar[tuple[str, ...]] = ()
    headline_key: ClassVar[str] = "overall"
    # (metric key, header) of the per-benchmark category table in reports
    columns: ClassVar[tuple[tuple[str, str], ...]] = (("overall", "Overall"),)
    # a pipeline stage whose saved data set this benchmark reads when no ``path`` is given (the eval stage
    # then passes that stage's ``dataset_path`` and ``key`` to :meth:`use_dataset`); None: path or data_root
    source_stage: ClassVar[Optional[str]] = None

    def __init__(
        self, path: Optional[str] = None, on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0
    ) -> None:
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.path, self.on_bad_sample, self.limit, self.seed = path, on_bad_sample, limit, seed
        self.files: list[Path] = []  # the data files read (fingerprinted)
        self.skipped: Counter = Counter()  # reason -> count, with on_bad_sample=skip

    def use_dataset(self, path: str, key: str) -> None:
        """Read the data set saved at ``path`` by the stage ``source_stage`` (artifact key ``key``); only
        called when no ``path`` was configured."""
        raise NotImplementedError(f"{self.name} reads no pipeline stage's data set (source_stage is None)")

    # -- loading -------------------------------------------------------------------------------------------
    def root(self, data_root: Optional[str]) -> Path:
        """The benchmark's directory (or file): ``path`` if given, else ``<data_root>/<name>``."""
        if self.path:
            root = Path(self.path).expanduser()
        elif data_root:
            root = Path(data_root).expanduser() / self.name
        else:
            raise BenchmarkDataError(
                self.name,
                None,
                "no location: set eval.data_root (the benchmark is read "
                f"from <data_root>/{self.name}) or the benchmark's path",
            )
        if not root.exists():
            raise BenchmarkDataError(
                root, None, f"benchmark directory for {self.name!r} does not exist. {self.where_to_get()}"
            )
        return root

    def where_to_get(self) -> str:
        return "Put the benchmark's release there or point eval.data_root elsewhere."

    @abstractmethod
    def load_items(self, root: Path) -> list[dict[str, Any]]:
        """Items in the benchmark's own order; use :meth:`convert_rows` for the bad-row policy."""

    def load(self, data_root: Optional[str] = None) -> list[dict[str, Any]]:
        items = self.load_items(self.root(data_root))
        if self.limit:
            items = items[: int(self.limit)]
        return unique_ids(items)

    def convert_rows(
        self,
        file: Path,
        rows: Iterable[Any],
        convert: Callable[[Any, int], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """``convert(raw, row)`` each row; a failing row raises (naming file and row) or is counted and skipped."""
        self.files.append(Path(file))
        out = []
        for i, raw in enumerate(rows):
            try:
                item = convert(raw, i)
                if item["category"] not in self.categories:
                    raise BenchmarkDataError(
                        file,
                        i,
                        f"unknown category {item['category']!r}; {self.name} knows {list(self.categories)}",
                        "unknown category",
                    )
                for field in ("response_1", "response_2"):  # an empty response would be scored as a real one
                    if not isinstance(item.get(field), str) or not item[field].strip():
                        raise BenchmarkDataError(
                            file, i, f"item {item.get('id')!r}: {field} is empty or whitespace only", "empty response"
                        )
                if item["response_1"].strip() == item["response_2"].strip():  # no preference to judge: a coin
                    raise BenchmarkDataError(
                        file,
                        i,
                        f"item {item.get('id')!r}: response_1 and response_2 are identical",
                        "identical responses",
                    )
                if not isinstance(item.get("query"), str) or not item["query"].strip():
                    raise BenchmarkDataError(
                        file, i, f"item {item.get('id')!r}: query is empty or whitespace only", "empty query"
                    )
                item.setdefault("source", f"{file}:{i}")
                item.setdefault("group", item["id"])
                out.append(item)
            except BenchmarkDataError as exc:
                if self.on_bad_sample == "error":
                    raise BenchmarkDataError(
                        exc.file,
                        exc.row,
                        f"{exc.reason} (eval.on_bad_sample=skip skips such rows, counted as {exc.kind!r})",
                        exc.kind,
                    ) from None
                self.skipped[exc.kind] += 1
            except (KeyError, TypeError, ValueError) as exc:
                err = BenchmarkDataError(file, i, f"malformed row ({type(exc).__name__}: {exc})")
                if self.on_bad_sample == "error":
                    raise err from exc
                self.skipped["malformed row"] += 1
        return out

    # -- presentation and scoring ---------------------------------------------------------------------------
    def present(self, item: dict[str, Any], seed: int) -> dict[str, Any]:
        """The item as the official protocol shows it (for ``random_swap``: a seeded coin per item id)."""
        if self.order == "random_swap" and stable_hash(f"{seed}|{item['id']}") % 2 == 1:
            return swap(item)
        return dict(item)

    def score(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Official metrics of records ``{id, group, category, label, pred}`` (pred None = unparsed)."""
        out = M.accuracy_table(records, self.on_parse_failure, self.categories, coin_seed=self.coin_seed)
        out["headline"] = out.get(self.headline_key)
        return out

    def fingerprint(self) -> str:
        """sha256 over the data files read (image files are not hashed: they can be many GB)."""
        h = hashlib.sha256()
        for f in sorted(set(self.files)):
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(json.dumps({"limit": self.limit, "skipped": sorted(self.skipped.items())}).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "order": self.order,
            "on_parse_failure": self.on_parse_failure,
            "categories": list(self.categories),
            "headline_key": self.headline_key,
            "columns": [list(c) for c in self.columns],
            "files": [str(f) for f in self.files],
        }


# -- helpers -----------------------------------------------------------------------------------------------
def swap(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    out["response_1"], out["response_2"] = item["response_2"], item["response_1"]
    out["label"] = 3 - int(item["label"])
    return out


def unique_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make ``id`` unique: the second ``x`` becomes ``x#2`` (VL-RewardBench repeats 25 ids)."""
    seen: Counter = Counter()
    for it in items:
        seen[it["id"]] += 1
        if seen[it["id"]] > 1:
            it["id"] = f"{it['id']}#{seen[it['id']]}"
    return items


def resolve_image(file: Path, row: int, rel: str, *bases: Path) -> Path:
    """The first ``base / rel`` that is a file; else an error naming the data file, row and image path."""
    for base in bases:
        p = base / rel
        if p.is_file():
            return p
    raise BenchmarkDataError(
        file, row, f"missing image file {rel!r} (looked in {[str(b) for b in bases]})", "missing image"
    )


def sample_frames(folder: Path, n: int, file: Path, row: int) -> list[Path]:
    """``n`` frames sampled uniformly (first and last included) from a folder of frame images."""
    if not folder.is_dir():
        raise BenchmarkDataError(file, row, f"missing video frame folder {str(folder)!r}", "missing image")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise BenchmarkDataError(file, row, f"video frame folder {str(folder)!r} holds no images", "missing image")
    return [frames[i] for i in M.uniform_indices(len(frames), n)]


def open_images(item: dict[str, Any]) -> list[Image.Image]:
    """Open an item's image references as RGB PIL images, transparency on white (BadSampleError names the
    item and file)."""
    out = []
    for ref in item["images"]:
        try:
            if isinstance(ref, Image.Image):
                out.append(to_rgb(ref))
                continue
            if isinstance(ref, dict):
                ref = ref.get("bytes") or ref.get("path")
            src = io.BytesIO(ref) if isinstance(ref, (bytes, bytearray)) else ref
            with Image.open(src) as im:
                out.append(to_rgb(im))
        except Exception as exc:  # PIL raises many types for broken files
            where = ref if isinstance(ref, (str, Path)) else "<bytes>"
            raise BadSampleError(
                item["id"],
                "images",
                kind="unreadable image",
                reason=f"cannot open {where} ({type(exc).__name__}: {exc}) [{item.get('source', '')}]",
            ) from None
    return out
