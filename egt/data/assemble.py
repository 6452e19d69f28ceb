"""The preference data set from a config: the synthetic world, or outside sources converted, deduplicated,
decontaminated and mixed (docs/design.md §2.2), as the three splits. The data stage (egt.stages.data) keys,
validates and saves it; ``python -m egt.data.inspect`` shows it without saving."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from datasets import DatasetDict
from omegaconf import DictConfig

from egt.data.schema import randomize_order
from egt.data.world import as_world_config, make_world
from egt.utils.conf import to_container

log = logging.getLogger("egt.stages.data")  # the data stage's log lines, as before
SPLITS = ("sft_pool", "rl_pool", "bench")
TRAINING_POOLS = ("sft_pool", "rl_pool")


def build(cfg: DictConfig) -> tuple[DatasetDict, dict[str, Any]]:
    """The three splits, and per-source counts (outside data only)."""
    if cfg.data.name == "world" and not cfg.data.sources:
        return make_world(as_world_config(to_container(cfg.data.world))), {}
    from egt.data.sources import build_split

    sources = to_container(cfg.data.sources) or {}
    unknown = sorted(set(sources) - set(SPLITS))
    if unknown:
        raise ValueError(f"data.sources has {unknown}: the splits are {list(SPLITS)}")
    if not any(sources.get(s) for s in SPLITS):
        raise ValueError(
            f"data={cfg.data.name} names no source: set data.path (data=r1_reward_rl) or "
            "data.sources.<split>=[{path: …}] (data=preference_files)"
        )
    from egt.data import mixture

    mix = to_container(cfg.data.mix) if cfg.data.get("mix") else {}
    mixture.check(mix, sources)
    mix = mixture.active(mix)
    splits, counts = {}, {}
    for split in SPLITS:
        ds, counts[split] = build_split(
            list(sources.get(split) or []),
            split,
            cfg.data.on_bad_sample,
            cfg.data.image_root,
            num_proc=cfg.data.get("num_proc", 1),
        )
        if cfg.data.randomize_order and len(ds):
            ds, _ = randomize_order(ds, seed=cfg.data.seed)
        splits[split] = ds
    if cfg.data.deduplicate:
        from egt.data.decontam import deduplicate

        splits, counts["duplicates"] = deduplicate(splits)
        if any(counts["duplicates"][k].get(p) for k in ("inside", "across") for p in counts["duplicates"][k]):
            log.warning("[data] duplicates dropped: %s", counts["duplicates"])
    names = list(cfg.data.contamination_benchmarks or [])
    if names:
        from egt.data.decontam import decontaminate, load_index

        index, status = load_index(names, cfg.eval.get("data_root"))
        counts["contamination"] = {"benchmarks": status, "dropped": bool(cfg.data.decontaminate)}
        for split in TRAINING_POOLS:
            splits[split], found = decontaminate(splits[split], index, drop=cfg.data.decontaminate)
            counts["contamination"][split] = found
            if found["rows"]:
                log.warning(
                    "[data] %s: %d samples are benchmark items %s; %s",
                    split,
                    found["rows"],
                    found["overlap"],
                    "dropped" if cfg.data.decontaminate else "kept (data.decontaminate=false)",
                )
    for split in TRAINING_POOLS:
        if split in mix:  # each source's share, sampled from what is left after every drop
            splits[split], mixed = mixture.mix_pool(
                splits[split], mix[split], cfg.data.seed, split, list(counts[split])
            )
            for name, c in mixed.items():
                counts[split][name].update(c)
            log.info("[data] %s mixed: %s", split, {n: (c["unmixed"], c["repeated"]) for n, c in mixed.items()})
    for split in SPLITS:  # per source, what is left after every drop (and the mix), in the order shown
        balance = Counter(zip(splits[split]["source"], splits[split]["label"])) if len(splits[split]) else Counter()
        for name, c in counts[split].items():
            c.update(
                final=balance[(name, 1)] + balance[(name, 2)], label_1=balance[(name, 1)], label_2=balance[(name, 2)]
            )
    return DatasetDict(splits), counts
