"""rft stage (UnifiedReward-Think's stage 2; docs/design.md §4.6): rejection-sampling fine-tuning — the SFT
judge's own correct reasoning on the RL pool, fine-tuned on with the SFT stage's code, loss and cache.

Source: Wang et al. 2025, arXiv 2505.03318, §3 (cold start → rejection sampling → GRPO on the failures);
CodeGoat24/UnifiedReward@ff6f520, ``UnifiedReward-Think/1.rejection_sampling.sh`` (the cold start's
recipe, ``0.cold_start.sh``, from the cold-started checkpoint) and its README ("Samples that are correctly
predicted by the model should be retained and used for rejection sampling").

Input: the probe stage's table of the SFT judge's draws over ``probe.split`` (written with
``probe.keep_texts=true``: every draw's text), the SFT judge. :func:`egt.sft.rejection.keep_correct` keeps
the draws whose verdict equals the label and whose text passes ``rft.format`` (``rft.keep``: the first per
sample, or all distinct ones up to ``rft.per_sample``); :func:`egt.stages.sft.train` continues SFT from the
SFT judge on them with the ``sft`` settings, ``rft.sft`` overriding any of them. Output at ``<artifact>/``:
``trajectories.parquet`` (id, draw, target), and what the sft stage writes (``model/``, ``curve.json``,
``bench_eval.json``, ``checkpoints/``: a killed run resumes mid-training). RL and eval start from this
model when ``rft`` is in ``stages`` (egt.stages.rl.start_model; eval.models names ``rft``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from egt import distributed
from egt.artifacts import make_key
from egt.components import build
from egt.config import to_container
from egt.data.prompt import template_key
from egt.models.liger import key_extras as liger_key
from egt.models.resolve import pixel_budget
from egt.rl.rules import FormatRule
from egt.sft.rejection import keep_correct, rejection_summary, trajectory_set
from egt.stages import data as data_stage
from egt.stages import sft as sft_stage
from egt.training import recipe
from egt.utils.atomic import write_parquet_atomic
from egt.utils.fmt import num, pct

log = logging.getLogger(__name__)
REQUIRES = ("data", "sft", "probe")  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 1


def train_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``cfg.rft.sft`` merged over its ``sft`` section: what :func:`egt.stages.sft.train` reads
    (a new config; ``cfg`` is unchanged)."""
    overrides = cfg.rft.get("sft")
    return OmegaConf.merge(cfg, {"sft": to_container(overrides) if overrides is not None else {}})


def settings(cfg: DictConfig) -> DictConfig:
    """The SFT settings this stage trains with: ``cfg.sft`` with ``cfg.rft.sft`` over it."""
    return train_config(cfg).sft


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """What the fine-tuned model depends on besides the probe's, sft's and data's keys: the keep rule and
    the SFT settings (less what the sft stage leaves out of its key), and the training context sft keys on."""
    r = cfg.rft
    sft = sft_stage.key_settings(settings(cfg))
    return {
        "keep": str(r.keep),
        "per_sample": r.per_sample,
        "format": to_container(r.format),
        "sft": sft,
        "seed": cfg.seed,
        "template": template_key(cfg.data.template),
        "on_bad_sample": cfg.data.on_bad_sample,
        "trainer": to_container(cfg.trainer),
        "dtype": cfg.model.dtype,
        "freeze_vision": cfg.model.freeze_vision,
        **pixel_budget(cfg),
        **liger_key(cfg),  # sft.train runs Liger's kernels and fused loss when on; absent when off (keys unchanged)
    }


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    data, sft, probe = pipe.get("data"), pipe.get("sft"), pipe.get("probe")
    conf = key_config(cfg)
    upstream = {"data": data["key"], "sft": sft["key"], "probe": probe["key"]}
    key = make_key("rft", conf, upstream=upstream, version=VERSION)
    with pipe.store.open("rft", key, ranks="all") as art:  # every rank trains (DDP / DeepSpeed), rank 0 writes
        if not art.reused:
            table = pd.read_parquet(probe["table_path"])
            rule = build(cfg.rft.format, FormatRule, "rft.format")
            kept = keep_correct(table, rule, str(cfg.rft.keep), cfg.rft.per_sample)
            counts = rejection_summary(table, kept)
            log.info("[rft] rejection sampling: %s", json.dumps(counts))
            if len(kept) == 0:
                raise ValueError(
                    f"rft: none of the {counts['draws']} probe draws of {probe['table_path']} has the label's verdict "
                    f"and a valid format ({counts['right_verdicts']} right verdicts): nothing to fine-tune on. "
                    "Draw more (probe.n=8 probe.temperature=1.0) or train the SFT judge longer"
                )
            if distributed.is_main():
                write_parquet_atomic(kept, art.path / "trajectories.parquet")
            pool = data_stage.load(data)[cfg.probe.split]
            base = Path(sft["model_path"])
            summary = sft_stage.train(
                train_config(cfg), art.path, base, data, trajectory_set(pool, kept), pipe.store, stage="rft"
            )
            art.finish(
                {**counts, **summary}, {"config": conf, "upstream": upstream}, drop=recipe.dropped_when_finished(cfg)
            )
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "model_path": str(art.path / "model"),
        "trajectories_path": str(art.path / "trajectories.parquet"),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary)."""
    s = summary
    if "kept" not in s:
        return ""
    noise = (
        f" ({s['flipped_kept']} on flipped labels: {pct(s.get('flipped_in_kept'))} of kept, pool rate "
        f"{pct(s.get('flipped_rate'))})"
        if "flipped_kept" in s
        else ""
    )
    bench = f"; bench accuracy {pct(s['bench_accuracy'])}" if "bench_accuracy" in s else ""
    return (
        f"kept {s['kept']:,} trajectories of {s['kept_samples']:,}/{s['n_pool']:,} samples{noise}{bench}, "
        f"{s.get('steps', '?')} step{'' if s.get('steps') == 1 else 's'}, loss {num(s.get('train_loss_first'))} -> "
        f"{num(s.get('train_loss_last'))}"
    )
