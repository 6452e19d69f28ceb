"""select stage (paper §2.3–2.4): from the probe table to the ordered ids RL trains on.

Output: ``selection.json`` (the contract of :mod:`egt.select.curriculum`:
ids in epoch 0's order, shuffle_each_epoch, seed, scores, method, curriculum).
Cheap, so its key is the probe's key plus the entropy / selection / curriculum
config: ``-m entropy=answer,sentence,mix`` probes once and selects three ways.
In the synthetic world the summary says how many flipped / ambiguous samples
were kept and dropped; a method's own findings (``Selection.stats``: e.g. ``cl_flagged``) join it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from egt.artifacts import make_key
from egt.components import build
from egt.config import to_container
from egt.select.curriculum import Curriculum
from egt.select.methods import Selection
from egt.select.noise import noise_breakdown
from egt.select.scores import EntropyScore
from egt.select.selection import select
from egt.utils.atomic import write_json_atomic
from egt.utils.fmt import pct
from egt.utils.logging import close_logger, log_metrics, make_logger

log = logging.getLogger(__name__)
REQUIRES = ("probe", "rft", "data")  # the stages this one may ask the pipeline for (egt.stages); rft, data: reprobe
VERSION = 1


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    probe = probe_to_select_from(cfg, pipe)
    score = build(cfg.entropy.score, EntropyScore, "entropy.score")
    method = build(cfg.selection.method, Selection, "selection.method")
    curriculum = build(cfg.curriculum.order, Curriculum, "curriculum.order")
    conf = key_config(cfg)
    key = make_key("select", conf, upstream={"probe": probe["key"]}, version=VERSION)
    with pipe.store.open("select", key) as art:
        if not art.reused:
            table = pd.read_parquet(probe["table_path"])
            s = cfg.selection
            sel = select(
                table,
                score,
                method,
                curriculum,
                k=s.k,
                fraction=s.fraction,
                percentile_p=s.percentile,
                band=s.band,
                seed=s.seed,
                curriculum_seed=cfg.curriculum.seed,
            )
            summary = summarize(table, sel, score) | method.stats() | probe_cost(table, probe.get("summary") or {})
            write_json_atomic(art.path / "selection.json", sel)
            log.info(format_summary(summary))
            logger = make_logger(cfg, "select")
            try:
                log_metrics(logger, {f"select/{k}": v for k, v in summary.items()})
            finally:
                close_logger(logger, "success")
            art.finish(summary, {"config": conf, "upstream": {"probe": probe["key"]}})
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "selection_path": str(art.path / "selection.json"),
    }


def probe_to_select_from(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    """The probe artifact the selection reads: the probe stage's (the SFT judge's), or with ``rft.reprobe=true``
    (and ``rft`` in the stages) a probe of the rft judge, the judge RL starts from, with the same ``probe.*``
    settings (UnifiedReward-Think's ``selection=incorrect`` as issue 33 asks; docs/design.md §4.6). Its key
    names the rft model, so the select key follows it; without the option nothing changes."""
    if not (cfg.get("rft") and cfg.rft.get("reprobe") and "rft" in [str(s) for s in cfg.stages]):
        return pipe.get("probe")
    from egt.stages import probe as probe_stage

    rft = pipe.get("rft")
    return probe_stage.probe_model(cfg, pipe, rft["model_path"], f"rft:{rft['key']}")


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary)."""
    s = summary
    if "n_selected" not in s:
        return ""
    noise = "".join(
        f"; {name} kept {s[f'{name}_kept']} (pool rate {pct(s.get(f'{name}_rate'))}, "
        f"kept {pct(s[f'{name}_kept'] / max(1, s['n_selected']))})"
        for name in ("flipped", "ambiguous")
        if f"{name}_kept" in s
    )
    cost = f"; probe {s['probe_draws']:,} outputs, {s.get('probe_seconds')} s" if "probe_draws" in s else ""
    by = f"{s['method_title']} ({s.get('method')})" if "method_title" in s else s.get("method")
    flagged = f", {s['cl_flagged']} flagged" if "cl_flagged" in s else ""
    return f"kept {s['n_selected']:,} of {s.get('n_pool', '?'):,} by {by}{flagged} on {s.get('score')}{noise}{cost}"


# Settings of the online curriculum (egt.select.online): the RL stage reads them, the selection.json of
# epoch 0 does not depend on them, so they are not in this stage's key (static runs keep theirs).
ONLINE_KEYS = {"selection": ("online", "max_change"), "curriculum": ("reprobe_every",)}


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """What selection.json depends on: the entropy, selection and curriculum groups, less ONLINE_KEYS."""
    conf = {
        "entropy": to_container(cfg.entropy),
        "selection": to_container(cfg.selection),
        "curriculum": to_container(cfg.curriculum),
    }
    for group, keys in ONLINE_KEYS.items():
        for k in keys:
            conf[group].pop(k, None)
    return conf


def summarize(table: pd.DataFrame, sel: dict[str, Any], score: EntropyScore) -> dict[str, Any]:
    kept = table["id"].astype(str).isin(set(sel["ids"])).to_numpy()
    scores = score(table)
    fin = np.isfinite(scores)
    out: dict[str, Any] = {
        "method": sel["method"],
        "score": sel["score"],
        "curriculum": sel["curriculum"],
        "band": sel["band"],
        "n_pool": int(len(table)),
        **({"n_candidates": sel["n_candidates"]} if "n_candidates" in sel else {}),
        "n_selected": int(kept.sum()),
        "score_kept_mean": round(float(scores[kept & fin].mean()), 4) if (kept & fin).any() else None,
        "score_dropped_mean": round(float(scores[~kept & fin].mean()), 4) if (~kept & fin).any() else None,
        "no_answer_kept": int((kept & ~np.isfinite(table["answer_entropy"].to_numpy())).sum()),
        "accuracy_kept": round(float(table.loc[kept, "correct_score"].mean()), 4) if kept.any() else None,
    }
    if "stages" in sel:  # curriculum=two_stage: stage 1 trains on the moderate ones only
        out.update(hard_kept=len(sel["stages"]["hard"]), moderate_kept=int(kept.sum()) - len(sel["stages"]["hard"]))
    out.update(noise_breakdown(table, kept))
    return out


def probe_cost(table: pd.DataFrame, probe_summary: dict[str, Any]) -> dict[str, Any]:
    """What the probe behind this selection cost: outputs generated (``n_samples`` per row, both orders
    counted), the probe stage's wall and CPU seconds (None for an outside table) and, where the probe
    recorded it, whether its CPU seconds are every shard's (``probe_seconds_complete``: false when it resumed
    from shards written before egt kept their seconds)."""
    per_row = table["n_samples"].to_numpy() if "n_samples" in table else np.ones(len(table))
    draws = int(per_row.sum()) * (2 if "answer_entropy_swapped" in table else 1)
    complete = probe_summary.get("probe_seconds_complete")
    return {
        "probe_draws": draws,
        "probe_seconds": probe_summary.get("probe_seconds"),
        "probe_cpu_seconds": probe_summary.get("probe_cpu_seconds"),
        **({} if complete is None else {"probe_seconds_complete": complete}),
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"[select] {s['method']} on {s['score']} entropy, band {s['band']}, curriculum {s['curriculum']}: "
        f"kept {s['n_selected']} of {s['n_pool']} (mean score kept {s['score_kept_mean']}, "
        f"dropped {s['score_dropped_mean']}; accuracy of kept {s['accuracy_kept']})"
    ]
    extra = {k: v for k, v in s.items() if k.startswith(("bis_", "cl_"))}  # the method's own (Selection.stats)
    if extra:
        lines.append(
            f"[select]   {s.get('method_title', s['method'])}: " + ", ".join(f"{k} {v}" for k, v in extra.items())
        )
    if "hard_kept" in s:
        lines.append(f"[select]   two stages: {s['moderate_kept']} moderate, then {s['hard_kept']} hard added")
    if "flipped_kept" in s:
        for name in ("flipped", "ambiguous", "noisy"):
            lines.append(
                f"[select]   {name:9s} kept {s[f'{name}_kept']:5d}  dropped {s[f'{name}_dropped']:5d}  "
                f"(rate in pool {s[f'{name}_rate']}); 'dropped => {name}': precision "
                f"{s[f'{name}_precision']}, recall {s[f'{name}_recall']}"
            )
    return "\n".join(lines)
