"""data stage: build the preference data set (splits sft_pool, rl_pool, bench) as HF datasets."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from datasets import DatasetDict
from omegaconf import DictConfig

from egt.artifacts import make_key
from egt.config import DataConfig, to_container
from egt.data.assemble import SPLITS, build
from egt.data.schema import validate_dataset
from egt.utils.atomic import load_saved_dataset, save_dataset_atomic

log = logging.getLogger(__name__)
REQUIRES = ()  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 1


# DataConfig fields of outside data; left out of the world's key while unset (its keys stay as they were)
OUTSIDE_KEYS = {
    k: getattr(DataConfig(), k)
    for k in ("sources", "path", "image_root", "seed", "decontaminate", "deduplicate", "contamination_benchmarks")
}


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """What the data set depends on: the config, and for outside sources a content fingerprint of
    each file (and of its image folder), so a file changed under the same path is not reused stale.
    ``data.num_proc`` is not in it (same rows), nor an unset ``data.mix``, nor ``data.hints`` (RL's prompts,
    in the RL key)."""
    conf = {
        k: v
        for k, v in to_container(cfg.data).items()
        if k not in ("mix", "num_proc", "hints") and not (k in OUTSIDE_KEYS and v == OUTSIDE_KEYS[k])
    }
    from egt.data.mixture import active

    mix = active(to_container(cfg.data.mix) if cfg.data.get("mix") else {})
    if mix:  # unset, the key is the one from before mixing existed
        conf["mix"] = mix
    if cfg.data.sources:
        from egt.data.sources import fingerprint

        conf["fingerprints"] = {
            split: [fingerprint(str(s["path"]), s.get("image_root") or cfg.data.image_root) for s in (specs or [])]
            for split, specs in to_container(cfg.data.sources).items()
        }
        conf["contamination"] = benchmark_fingerprints(
            list(cfg.data.contamination_benchmarks or []), cfg.eval.get("data_root")
        )
    return conf


def benchmark_fingerprints(names: list[str], data_root: str | None) -> dict[str, str]:
    """Each contamination benchmark's data fingerprint ("absent" when it cannot be read): the pools
    depend on what was checked against."""
    from egt.benchmarks import get
    from egt.benchmarks.base import BenchmarkDataError

    out = {}
    for name in names:
        bench = get(name)()
        try:
            bench.load(data_root)
            out[name] = bench.fingerprint()
        except BenchmarkDataError:
            out[name] = "absent"
    return out


def split_summary(ds) -> dict[str, Any]:
    labels = Counter(ds["label"])
    metas = [json.loads(m) for m in ds["meta"]]
    out = {"n": len(ds), "label_1": labels.get(1, 0), "label_2": labels.get(2, 0)}
    if metas and "flipped" in metas[0]:
        out["flipped"] = sum(bool(m.get("flipped")) for m in metas)
        out["ambiguous"] = sum(bool(m.get("ambiguous")) for m in metas)
    out["categories"] = dict(Counter(ds["category"]))
    return out


def run(cfg: DictConfig, pipe) -> dict[str, Any]:
    conf = key_config(cfg)
    key = make_key("data", conf, version=VERSION)
    with pipe.store.open("data", key) as art:
        if not art.reused:
            dsd, per_source = build(cfg)
            summary: dict[str, Any] = {}
            for extra in ("contamination", "duplicates"):
                if extra in per_source:
                    summary[extra] = per_source.pop(extra)
            for split in list(dsd):
                dsd[split], counts = validate_dataset(dsd[split], cfg.data.on_bad_sample)
                if counts.get("skipped"):
                    log.warning("[data] %s: skipped %d bad samples %s", split, counts["skipped"], counts["reasons"])
                summary[split] = {**split_summary(dsd[split]), "skipped": counts.get("skipped", 0)}
                if per_source.get(split):
                    summary[split]["sources"] = per_source[split]
                log.info("[data] %s: %s", split, summary[split])
            save_dataset_atomic(dsd, art.path / "dataset")
            art.finish(summary)
        summary = art.summary
    flat = {f"{s}_n": summary[s]["n"] for s in SPLITS if s in summary}
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": flat,
        "splits": summary,
        "dataset_path": str(art.path / "dataset"),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary): the size of each split."""
    s = summary
    counts = {
        k: (v.get("n") if isinstance(v, dict) else s.get(f"{k}_n"))
        for k, v in s.items()
        if k in ("sft_pool", "rl_pool", "bench")
    }
    counts.update({k[:-2]: v for k, v in s.items() if k in ("sft_pool_n", "rl_pool_n", "bench_n")})
    return ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int))


def load(result: dict[str, Any]) -> DatasetDict:
    return load_saved_dataset(result["dataset_path"])
