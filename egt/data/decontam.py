"""Benchmark contamination of training pools: a training sample that *is* a benchmark item.

VL-RewardBench draws its items from RLAIF-V, RLHF-V and WildVision, which are also SFT sources of
the paper (§3.1), so an SFT or RL pool built from them can hold benchmark items. A training sample
matches a benchmark item when their questions are equal after normalisation (Unicode NFKC, case,
whitespace, surrounding punctuation) and their first images have perceptual hashes within
``max_distance`` bits: the 64-bit difference hash (dHash: a 9×8 grey thumbnail, one bit per pair of
horizontal neighbours; Krawetz 2013) survives re-encoding, resizing and small colour shifts, so a
re-saved JPEG of the same picture still matches, while different pictures with the same question
("Describe this image.") do not. egt's own code: no deduplication library covers multimodal pairs.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from typing import Any, Iterable

import datasets
from PIL import Image

from egt.utils.images import to_rgb

log = logging.getLogger(__name__)


def dhash(image: Image.Image, size: int = 8) -> int:
    """64-bit difference hash of ``image`` (``size``² bits).

    >>> a = Image.linear_gradient("L").rotate(90).convert("RGB")   # brightness changes left to right
    >>> dhash(a) == dhash(a.resize((97, 61)))   # resized: the same hash
    True
    >>> bin(dhash(a) ^ dhash(a.transpose(Image.Transpose.FLIP_LEFT_RIGHT))).count("1")   # mirrored: all 64 bits
    64
    """
    grey = to_rgb(image).convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    px = list(grey.getdata())
    bits = 0
    for y in range(size):
        for x in range(size):
            bits = (bits << 1) | (px[y * (size + 1) + x] > px[y * (size + 1) + x + 1])
    return bits


def question_key(text: str) -> str:
    """A question normalised for matching.

    >>> question_key("  How MANY\\n giraffes are in the image? ") == question_key("how many giraffes are in the image")
    True
    """
    t = unicodedata.normalize("NFKC", text).casefold()
    t = re.sub(r"\s+", " ", t).strip()
    return t.strip(" .?!:;,\"'")


class BenchmarkIndex:
    """The (question, image hash) of every item of some benchmarks, for :meth:`matches`."""

    def __init__(self, max_distance: int = 4) -> None:
        self.max_distance = max_distance
        self.by_question: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # q → (hash, bench, id)
        self.sizes: dict[str, int] = {}

    def add(self, bench: str, items: Iterable[dict[str, Any]]) -> None:
        from egt.benchmarks.base import open_images

        n = 0
        for item in items:
            images = open_images(item)
            if images:
                self.by_question[question_key(item["query"])].append((dhash(images[0]), bench, str(item["id"])))
                n += 1
        self.sizes[bench] = n

    def matches(self, query: str, image: Image.Image) -> list[tuple[str, str]]:
        """(benchmark, item id) of every indexed item this sample duplicates."""
        candidates = self.by_question.get(question_key(query))
        if not candidates:
            return []
        h = dhash(image)
        return [(b, i) for hb, b, i in candidates if bin(hb ^ h).count("1") <= self.max_distance]


def find_overlaps(ds: datasets.Dataset, index: BenchmarkIndex) -> list[tuple[int, str, str]]:
    """(row, benchmark, item id) for each row of ``ds`` that duplicates a benchmark item. Images are
    decoded only for rows whose question some benchmark item has (a few, usually)."""
    rows = [i for i, q in enumerate(ds["query"]) if question_key(q) in index.by_question]
    out = []
    for i in rows:
        row = ds[i]
        if row["images"]:
            out += [(i, b, item) for b, item in index.matches(row["query"], row["images"][0])]
    return out


def decontaminate(ds: datasets.Dataset, index: BenchmarkIndex, drop: bool) -> tuple[datasets.Dataset, dict]:
    """Find (and with ``drop``, remove) the rows of ``ds`` that are benchmark items. Returns the data set
    and ``{"overlap": {benchmark: {source: rows}}, "dropped": n, "examples": [...]}``."""
    hits = find_overlaps(ds, index)
    sources = ds["source"] if hits else []
    overlap: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for i, bench in sorted({(i, bench) for i, bench, _ in hits}):  # a row counts once per benchmark
        overlap[bench][sources[i]] += 1
    rows = {i for i, _, _ in hits}
    ids = ds["id"] if hits else []
    examples = [{"id": ids[i], "benchmark": b, "item": item} for i, b, item in hits[:5]]
    if drop and rows:
        ds = ds.select([i for i in range(len(ds)) if i not in rows])
    return ds, {
        "overlap": {b: dict(s) for b, s in overlap.items()},
        "rows": len(rows),
        "dropped": len(rows) if drop else 0,
        "examples": examples,
    }


def load_index(names: list[str], data_root: str | None, max_distance: int = 4) -> tuple[BenchmarkIndex, dict]:
    """An index of the named registered benchmarks found under ``data_root``; the ones that cannot be
    read are listed (with why) in the second return value, never silently treated as clean."""
    from egt.benchmarks import get
    from egt.benchmarks.base import BenchmarkDataError

    index, status = BenchmarkIndex(max_distance), {}
    for name in names:
        bench = get(name)()
        try:
            items = bench.load(data_root)
        except BenchmarkDataError as err:
            status[name] = f"not checked: {err}"
            log.warning("[data] contamination against %s not checked: %s", name, err)
            continue
        index.add(name, items)
        status[name] = {"items": index.sizes[name], "fingerprint": bench.fingerprint()}
    return index, status


# ------------------------------------------------------------------ duplicates inside and across pools
def sample_keys(ds: datasets.Dataset) -> list[str]:
    """One key per row: the normalised question, the two responses as an unordered pair (whitespace
    collapsed) and the SHA-1 of every image's bytes; equal keys = the same preference pair, shown in any
    order. Images are hashed from their stored bytes, not decoded."""
    import hashlib

    raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    keys = []
    for batch in raw.iter(batch_size=1000):
        for q, r1, r2, images in zip(batch["query"], batch["response_1"], batch["response_2"], batch["images"]):
            h = hashlib.sha1(question_key(q).encode())
            for r in sorted((" ".join(r1.split()), " ".join(r2.split()))):
                h.update(b"\0" + r.encode())
            for im in images:
                h.update(b"\0" + hashlib.sha1(im.get("bytes") or str(im.get("path")).encode()).digest())
            keys.append(h.hexdigest())
    return keys


def deduplicate(
    splits: dict[str, datasets.Dataset], pools: tuple[str, str] = ("sft_pool", "rl_pool")
) -> tuple[dict[str, datasets.Dataset], dict]:
    """Drop repeated pairs inside each pool (the first stays), then the SFT-pool pairs that are also in
    the RL pool (RL trains on pairs SFT has not seen). Returns the splits and ``{pool: {source: n}}``
    counts under ``inside`` and ``across``."""
    report: dict[str, Any] = {"inside": {}, "across": {}}
    keys = {}
    for pool in pools:
        ds = splits[pool]
        k = sample_keys(ds) if len(ds) else []
        seen, keep, dropped = set(), [], defaultdict(int)
        sources = ds["source"] if len(ds) else []
        for i, key in enumerate(k):
            if key in seen:
                dropped[sources[i]] += 1
            else:
                seen.add(key)
                keep.append(i)
        if len(keep) < len(ds):
            splits[pool] = ds.select(keep)
        keys[pool] = [k[i] for i in keep]
        report["inside"][pool] = dict(dropped)
    sft, rl = pools
    in_rl = set(keys[rl])
    sources = splits[sft]["source"] if len(splits[sft]) else []
    both = [i for i, key in enumerate(keys[sft]) if key in in_rl]
    across: dict[str, int] = defaultdict(int)
    for i in both:
        across[sources[i]] += 1
    if both:
        drop = set(both)
        splits[sft] = splits[sft].select([i for i in range(len(splits[sft])) if i not in drop])
    report["across"][sft] = dict(across)
    return splits, report
