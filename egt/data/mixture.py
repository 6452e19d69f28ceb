"""Per-source mixture of a training pool (``data.mix.<pool>``): each source's share by weight or by count.

``data.mix.sft_pool`` (likewise ``rl_pool``; the bench split is never mixed) holds::

    weights: {rlaif_v: 1, povid: 2}   # a source's share of the weighted rows (normalised: 1:2 = 1/3:2/3)
    size: 90000                       # rows the weighted sources make together; null = the most rows
                                      # possible without repeating any weighted source
    counts: {wildvision_battle: 5000} # exactly this many rows of a source, on top

Sources are named as in ``data.sources.<pool>`` (``name``, else the file's stem). A source named in
neither map keeps every row once, as without a mix; weight 0 or count 0 leaves a source out.

Policy (the deterministic counterpart of LlamaFactory's ``interleave_probs`` with ``mix_strategy``
``interleave_under`` / ``interleave_over``, i.e. HF ``interleave_datasets`` with ``first_exhausted`` /
``all_exhausted``, whose per-source counts are random; and of Megatron's blended datasets, which
split a requested total by normalised weights):

- ``size`` is shared out exactly: each weighted source gets ``size * w / Σw`` rows, rounded by largest
  remainder (ties to the earlier source), so the counts add up to ``size``. With ``size: null`` the size
  is the largest at which no weighted source needs more rows than it has (under-sampling).
- A source asked for ``c`` rows of the ``a`` it has gives, if ``c <= a``, a seeded sample of ``c``
  without replacement; if ``c > a``, every row ``c // a`` times plus a seeded sample of ``c % a``
  (repetition by whole passes, as Megatron-Energon's ``repetitions``: each row ⌊c/a⌋ or ⌈c/a⌉ times,
  never the lottery of sampling with replacement). A repeated row's id gets ``#2``, ``#3``, … and its
  ``meta`` the ``repeat`` number; its shown response order is the original's.
- The sample depends only on (``data.seed``, pool, source name): adding a source does not change
  another's rows, and a larger count keeps a smaller count's rows.
- Mixing comes after skips, deduplication and decontamination, so the weights are those of the rows
  that train. Rows keep their source order, then file order.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from egt.errors import ConfigError

if TYPE_CHECKING:
    import datasets

POOLS = ("sft_pool", "rl_pool")
FIELDS = ("weights", "counts", "size")


def source_name(spec: Mapping[str, Any]) -> str:
    """A source's name: its ``name``, else its path's stem."""
    return str(spec.get("name") or Path(str(spec["path"])).stem)


def active(mix: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The pools' mixes with their unset parts left out (``{}``: no pool is mixed). This is what the
    data key holds, so a mix written out empty keys the same artifact as none.

    >>> active({"sft_pool": {"weights": {"a": 1}, "counts": {}, "size": None}, "rl_pool": {"weights": {}}})
    {'sft_pool': {'weights': {'a': 1.0}}}
    """
    out = {}
    for pool, m in (mix or {}).items():
        m = {k: v for k, v in (m or {}).items() if v not in (None, {}, [])}
        if "weights" in m:
            m["weights"] = {str(k): float(v) for k, v in m["weights"].items()}
        if m:
            out[str(pool)] = m
    return out


def _number(key: str, value: Any, integer: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (integer and value != int(value)):
        what = "a whole number of rows >= 0" if integer else "a number >= 0"
        raise ConfigError(f"{key}={value!r}: must be {what}")


def check(mix: Mapping[str, Any] | None, sources: Mapping[str, Any] | None) -> None:
    """Raise :class:`ConfigError`, naming the config key, for two sources of one split with one name (mix
    or not), or a mix that cannot be built: a pool that is not a training pool, an unknown field or source
    name, a negative or non-numeric weight or count, weights that are all 0, a source with both, ``size``
    without weights."""
    import difflib

    check_names(sources)
    for pool, m in (mix or {}).items():
        where = f"data.mix.{pool}"
        if pool not in POOLS:
            raise ConfigError(f"{where}: only the training pools {list(POOLS)} are mixed")
        m = m or {}
        for k in m:
            if k not in FIELDS:
                close = difflib.get_close_matches(str(k), FIELDS, n=1)
                raise ConfigError(
                    f"{where}.{k}: not a mix field"
                    + (f" (did you mean {where}.{close[0]}?)" if close else f"; use {list(FIELDS)}")
                )
        if all(v in (None, {}, []) for v in m.values()):
            continue
        names = [source_name(s) for s in ((sources or {}).get(pool) or [])]
        weights, counts = dict(m.get("weights") or {}), dict(m.get("counts") or {})
        for field, values in (("weights", weights), ("counts", counts)):
            for name, value in values.items():
                key = f"{where}.{field}.{name}"
                if name not in names:
                    close = difflib.get_close_matches(str(name), names, n=1)
                    raise ConfigError(
                        f"{key}: data.sources.{pool} has no source named {name!r}"
                        + (f" (did you mean {close[0]}?)" if close else "")
                        + f"; its sources: {names}"
                    )
                _number(key, value, integer=field == "counts")
        both = sorted(set(weights) & set(counts))
        if both:
            raise ConfigError(f"{where}: {both} has both a weight and a count; give each source one of them")
        if weights and not any(weights.values()):
            raise ConfigError(
                f"{where}.weights are all 0: give some source a weight > 0, or drop "
                f"{where}.weights (counts alone, or no mix)"
            )
        if m.get("size") is not None:
            _number(f"{where}.size", m["size"], integer=True)
            if not weights:
                raise ConfigError(
                    f"{where}.size={m['size']} is the rows the weighted sources make together: "
                    f"set {where}.weights too (or use {where}.counts)"
                )


def check_names(sources: Mapping[str, Any] | None) -> None:
    """Two sources of one split must not share a name (``name``, else the file's stem, which repeats across
    releases: ``test-00000-of-00001``): they would share sample ids, and one's counts would overwrite the
    other's in the data summary. Raises :class:`ConfigError` saying to set ``name:``."""
    for split, specs in (sources or {}).items():
        names = [source_name(s) for s in (specs or []) if s.get("path") not in (None, "")]
        for n in dict.fromkeys(x for x in names if names.count(x) > 1):
            paths = [str(s["path"]) for s in specs if s.get("path") not in (None, "") and source_name(s) == n]
            raise ConfigError(
                f"data.sources.{split} has {len(paths)} sources named {n!r} ({', '.join(paths)}): a "
                "source's name is its `name`, else its file's stem; give each one its own, e.g. "
                f"{{path: {paths[0]}, name: {n}_1}}"
            )


def plan(
    available: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
    counts: Mapping[str, int] | None = None,
    size: int | None = None,
) -> dict[str, int]:
    """Rows each source contributes (sources in neither map: all they have), in ``available``'s order.

    >>> plan({"a": 10, "b": 20, "c": 30}, weights={"a": 1, "b": 1, "c": 2})  # 40 = min(10/¼, 20/¼, 30/½)
    {'a': 10, 'b': 10, 'c': 20}
    >>> plan({"a": 10, "b": 20, "c": 30}, weights={"a": 0.2, "b": 0.3, "c": 0.5}, size=100)
    {'a': 20, 'b': 30, 'c': 50}
    >>> plan({"a": 10, "b": 20, "c": 30}, weights={"a": 1, "b": 1, "c": 1}, size=10)  # 3⅓ each: a gets the 1
    {'a': 4, 'b': 3, 'c': 3}
    >>> plan({"a": 10, "b": 20, "c": 30}, counts={"a": 25, "c": 7})
    {'a': 25, 'b': 20, 'c': 7}
    """
    weights, counts = dict(weights or {}), dict(counts or {})
    out = {name: int(counts.get(name, n)) for name, n in available.items()}
    w = {name: Fraction(str(v)) for name, v in weights.items()}
    total = sum(w.values())
    if not w:
        return out
    if total <= 0:
        raise ValueError("weights are all 0")
    if size is None:
        size = min(math.floor(Fraction(available[n]) * total / v) for n, v in w.items() if v > 0)
    quota = {n: size * v / total for n, v in w.items()}
    base = {n: math.floor(q) for n, q in quota.items()}
    order = [n for n in available if n in w]
    by_remainder = sorted(order, key=lambda n: (-(quota[n] - base[n]), order.index(n)))
    for n in by_remainder[: size - sum(base.values())]:
        base[n] += 1
    out.update(base)
    return out


def pick(available: int, count: int, seed: int, pool: str, name: str) -> np.ndarray:
    """Row indices of one source: every row ``count // available`` times, then a seeded sample of
    ``count % available`` rows without replacement, each pass in file order.

    >>> pick(5, 3, 0, "sft_pool", "a").tolist() == sorted(pick(5, 3, 0, "sft_pool", "a").tolist())
    True
    >>> p = pick(4, 10, 0, "sft_pool", "a").tolist(); p[:8] == [0, 1, 2, 3, 0, 1, 2, 3] and len(set(p[8:])) == 2
    True
    """
    if count and not available:
        raise ValueError(f"{name}: {count} rows asked of a source that has none")
    h = hashlib.sha256(f"{int(seed)}/{pool}/{name}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(h[:8], "little"))
    reps, rem = divmod(count, available) if available else (0, 0)
    tail = np.sort(rng.permutation(available)[:rem])
    return np.concatenate([np.tile(np.arange(available), reps), tail]).astype(np.int64)


def mix_pool(
    ds: "datasets.Dataset", mix: Mapping[str, Any], seed: int, pool: str, names: list[str]
) -> tuple["datasets.Dataset", dict[str, dict[str, int]]]:
    """``ds`` (one pool, rows of ``names`` in that order) mixed by ``mix`` (:func:`active`'s form).
    Returns the mixed pool and per source ``{"unmixed": rows before, "repeated": rows that are copies}``."""
    sources = ds["source"] if len(ds) else []
    rows: dict[str, list[int]] = {n: [] for n in names}
    for i, s in enumerate(sources):
        rows.setdefault(s, []).append(i)
    available = {n: len(r) for n, r in rows.items()}
    where = f"data.mix.{pool}"
    for field in ("weights", "counts"):
        for n, v in (mix.get(field) or {}).items():
            if v and not available.get(n):
                raise ValueError(
                    f"{where}.{field}.{n}={v}: source {n} has no rows left after skips, deduplication "
                    "and decontamination (see the data summary); set it to 0 or drop it"
                )
    want = plan(available, mix.get("weights"), mix.get("counts"), mix.get("size"))
    index, copies, report = [], [], {}
    for n in rows:
        picked = pick(available[n], want[n], seed, pool, n)
        passes = np.arange(len(picked)) // max(available[n], 1)  # 0 for the first pass over the source
        index += [rows[n][i] for i in picked]
        copies += passes.tolist()
        report[n] = {"unmixed": available[n], "repeated": int((passes > 0).sum())}
    out = ds.select(index)
    if any(copies):
        out = _mark_copies(out, copies)
    return out, report


def _mark_copies(ds: "datasets.Dataset", copies: list[int]) -> "datasets.Dataset":
    """Ids ``<id>#k`` and ``meta.repeat = k`` for the k-th pass (k >= 2) over a source's rows."""

    def fn(ids: list[str], metas: list[str], indices: list[int]) -> dict:
        ids, metas = list(ids), list(metas)
        for j, i in enumerate(indices):
            if copies[i]:
                ids[j] = f"{ids[j]}#{copies[i] + 1}"
                meta = json.loads(metas[j]) if metas[j] else {}
                metas[j] = json.dumps({**meta, "repeat": copies[i] + 1}, sort_keys=True)
        return {"id": ids, "meta": metas}

    return ds.map(
        fn,
        input_columns=["id", "meta"],
        with_indices=True,
        batched=True,
        load_from_cache_file=False,
        features=ds.features,
        desc="[data] repeated rows",
    )
