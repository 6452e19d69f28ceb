"""probe stage (paper §2.3, eqs. 3–4): entropies of the SFT model's own outputs on rl_pool.

Output: ``probe.parquet`` (one row per sample, see :mod:`egt.probe.probe`),
``fig2.png`` + ``fig2.md`` (accuracy per entropy bin, Spearman ρ), the
per-shard parquet files it was assembled from (a killed probe resumes from
the last finished shard). ``probe.model_path`` probes with any local HF VLM
instead of the sft stage's model; ``probe.table_path`` uses an outside table.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from egt import distributed
from egt.artifacts import content_fingerprint, make_key
from egt.config import to_container
from egt.data.prompt import template_key
from egt.data.encode import ChatEncoder, image_tokens
from egt.models.resolve import load_for_inference, pixel_budget
from egt.probe.probe import merge_shards, probe_rows, shard_ranges, shard_seconds, shards_for_rank
from egt.probe.figure2 import entropy_accuracy, fig2_markdown, plot_fig2
from egt.select.noise import noise_at_fractions
from egt.stages.eval import drop_default_decode
from egt.select.scores import AnswerEntropy, SentenceEntropy
from egt.stages import data as data_stage
from egt.utils.atomic import write_json_atomic, write_parquet_atomic
from egt.utils.fmt import num, pct
from egt.utils.logging import close_logger, log_metrics, make_logger

log = logging.getLogger(__name__)
REQUIRES = ("data", "sft")  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 1
# How the probe is run, not what it produces (shard files are named by their range).
NOT_IN_KEY = ("model_path", "table_path", "batch_size", "chunk_size", "shard_size", "bins")


def _model(cfg: DictConfig, pipe: Any) -> tuple[str, str]:
    """(model dir, identity for the key): probe.model_path, else the sft stage's model."""
    if cfg.probe.model_path:
        path = str(Path(cfg.probe.model_path).expanduser().resolve())
        return path, f"path:{path}:{content_fingerprint(path)}"
    sft = pipe.get("sft")
    return sft["model_path"], f"sft:{sft['key']}"


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    p = cfg.probe
    if p.table_path:
        log.info("[probe] using outside probe table %s", p.table_path)
        return {
            "key": make_key("probe", {"table_path": str(p.table_path), "content": content_fingerprint(p.table_path)}),
            "path": str(Path(p.table_path).parent),
            "reused": True,
            "summary": {},
            "table_path": str(p.table_path),
        }
    model_path, model_id = _model(cfg, pipe)
    return probe_model(cfg, pipe, model_path, model_id)


def probe_model(cfg: DictConfig, pipe: Any, model_path: str, model_id: str) -> dict[str, Any]:
    """The probe artifact of the model at ``model_path`` (``model_id``: its identity in the key, e.g.
    ``sft:<key>``, ``rft:<key>``) with the ``probe.*`` settings: what the stage runs for the SFT judge, and the
    select stage for the rft judge with ``rft.reprobe`` (the judge RL starts from). Collective: every rank
    probes its shards."""
    data = pipe.get("data")
    conf = key_config(cfg)
    upstream = {"data": data["key"], "model": model_id}
    key = make_key("probe", conf, upstream=upstream, version=VERSION)
    with pipe.store.open("probe", key, ranks="all") as art:  # each rank probes its shards, rank 0 merges
        if not art.reused:
            summary = probe(cfg, art.path, model_path, data, distributed.rank(), distributed.world_size())
            art.finish(summary, {"config": conf, "upstream": upstream})  # rank 0 writes
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "table_path": str(art.path / "probe.parquet"),
        "figure_path": str(art.path / "fig2.png"),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary); none for an outside table."""
    s = summary
    if "n" not in s:
        return ""
    return (
        f"{s['n']:,} samples, accuracy {pct(s.get('accuracy'))}; answer entropy: Spearman rho vs accuracy "
        f"{num(s.get('spearman_answer'))}, flipped-label AUROC {num(s.get('answer_flipped_auroc'))}"
    )


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """What the probe table depends on. Sampled probing (temperature > 0) draws from one RNG stream per
    shard, batch by batch, so its rows depend on ``batch_size`` and ``shard_size`` too: then they are in
    the key (greedy probing does not depend on them). ``both_orders``, ``answer_probs`` and ``keep_texts``
    are in it only when true (their tables have more columns; without them the key is the one from before
    the settings existed; ``texts`` is every draw's output, which the rft stage reads), ``entropy_from``
    only when ``generate`` (its entropies differ from the teacher-forced pass's in the last digits);
    ``generation.decode`` only when not dynamic (a compiled decode step may round differently);
    ``entropy_head`` for a bf16 / fp16 model's teacher-forced pass, whose head now runs in fp32 (fp32 keys
    unchanged)."""
    p = cfg.probe
    conf = {k: v for k, v in to_container(p).items() if k not in NOT_IN_KEY}
    if not conf.get("both_orders"):
        conf.pop("both_orders", None)  # only when true: the shown-order probe keeps its key
    if not conf.get("answer_probs"):
        conf.pop("answer_probs", None)  # likewise: a probe without the answer-token probabilities keeps its key
    if not conf.get("keep_texts"):
        conf.pop("keep_texts", None)  # likewise: a table without the texts column keeps its key
    drop_default_decode(conf)  # generation.decode only when not dynamic
    if conf.get("entropy_from", "teacher_forced") == "teacher_forced":
        conf.pop("entropy_from", None)  # likewise: only the non-default source is in the key
    conf.update(
        template=template_key(cfg.data.template),
        dtype=cfg.model.dtype,
        seed=cfg.seed if p.temperature > 0 else None,
        **pixel_budget(cfg),
    )
    if p.temperature > 0:
        conf.update(batch_size=p.batch_size, shard_size=p.shard_size)
    if str(cfg.model.dtype) != "float32" and "entropy_from" not in conf:
        conf["entropy_head"] = "fp32"  # the teacher-forced head runs in fp32 now: bf16 entropies changed
    return conf


def probe(
    cfg: DictConfig, out: Path, model_path: str, data: dict, rank: int = 0, world_size: int = 1
) -> dict[str, Any]:
    """Probe this rank's shards (round robin); after a barrier rank 0 merges every shard into
    ``probe.parquet`` — the table one process writes — and summarises (others return ``{}``)."""
    p = cfg.probe
    dsd = data_stage.load(data)
    if p.split not in dsd:
        raise KeyError(f"probe.split={p.split} is not a split of the data set; it has {list(dsd)}")
    ds = dsd[p.split]
    if p.limit:
        ds = ds.select(range(min(p.limit, len(ds))))
    model, processor = load_for_inference(model_path, cfg)
    model = model.to(distributed.device(cfg))
    encoder = ChatEncoder(processor, template=cfg.data.template, max_length=p.max_length, length_key="probe.max_length")
    all_shards = shard_ranges(len(ds), p.shard_size)
    mine = shards_for_rank(all_shards, rank, world_size)
    logger = make_logger(cfg, "probe") if rank == 0 else None
    status = "failed"
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        counts = probe_rows(cfg, model, encoder, ds, mine, out, rank, "probe")
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        n_mine = sum(e - s for s, e in mine) if counts["shards_computed"] == len(mine) else None
        ranks = distributed.all_gather(
            (counts, n_mine, seconds, cpu_seconds)
        )  # also waits until every shard is written
        if rank != 0:
            status = "success"
            return {}
        table = merge_shards(out, all_shards)
        write_parquet_atomic(table, out / "probe.parquet")
        summary = summarize(table, p.bins, out)
        counts = {k: sum(r[0][k] for r in ranks) for k in counts}
        n_computed = None if any(r[1] is None for r in ranks) else sum(r[1] for r in ranks)
        seconds = max(r[2] for r in ranks)
        # every shard's CPU seconds, every rank's and attempt's: the table's cost whatever else shared the
        # machine and however often the probe was killed (this attempt's, when a shard kept no record)
        recorded = shard_seconds(out, all_shards)
        cpu = recorded["cpu"] if recorded is not None else sum(r[3] for r in ranks)
        summary.update(
            counts,
            probe_seconds=round(seconds, 1),  # this attempt's wall seconds (slowest rank)
            probe_cpu_seconds=round(cpu, 1),
            probe_seconds_complete=recorded is not None,
            processes=world_size,
            samples_per_s=round(n_computed / seconds, 2) if n_computed and seconds > 0 else None,
            **image_tokens(encoder),
        )
        log_metrics(logger, {f"probe/{k}": v for k, v in summary.items()})
        log.info("[probe] %s", summary)
        status = "success"
        return summary
    finally:
        close_logger(logger, status)


def _mean(x: pd.Series) -> float | None:
    x = x[np.isfinite(x.to_numpy(dtype=np.float64))]
    return round(float(x.mean()), 4) if len(x) else None


def summarize(table: pd.DataFrame, bins: int, out: Path) -> dict[str, Any]:
    """Scalars for the run summary; writes Figure 2 (PNG + Markdown) and fig2.json into ``out``."""
    df, rho = entropy_accuracy(table, bins)
    plot_fig2(df, out / "fig2.png", rho)
    (out / "fig2.md").write_text(fig2_markdown(df, rho))
    write_json_atomic(out / "fig2.json", {"bins": df.to_dict(orient="records"), "spearman": rho})
    right = table["correct_score"] >= 0.5
    s: dict[str, Any] = {
        "n": int(len(table)),
        "no_answer": int((~np.isfinite(table["answer_entropy"])).sum()),
        "accuracy": round(float(table["correct_score"].mean()), 4),
        "format_ok": round(float(table["format_ok"].mean()), 4),
        "answer_entropy": _mean(table["answer_entropy"]),
        "sentence_entropy": _mean(table["sentence_entropy"]),
        "reasoning_entropy": _mean(table["reasoning_entropy"]) if "reasoning_entropy" in table else None,
        "answer_entropy_right": _mean(table.loc[right, "answer_entropy"]),
        "answer_entropy_wrong": _mean(table.loc[~right, "answer_entropy"]),
        "sentence_entropy_right": _mean(table.loc[right, "sentence_entropy"]),
        "sentence_entropy_wrong": _mean(table.loc[~right, "sentence_entropy"]),
        "spearman_answer": rho.get("answer"),
        "spearman_sentence": rho.get("sentence"),
        "gen_length": round(float(np.mean([sum(g) / len(g) for g in table["gen_lengths"]])), 1),
    }
    for score in (AnswerEntropy(), SentenceEntropy()):
        for k, v in noise_at_fractions(table, score(table)).items():
            s[f"{score.name}_{k}"] = round(v, 4) if isinstance(v, float) and math.isfinite(v) else v
    return s
