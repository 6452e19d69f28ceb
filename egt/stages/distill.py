"""distill stage (paper §2.2): teacher trajectories for sft_pool through the fidelity filter."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import hydra
from datasets import Dataset, Features, Value, load_from_disk
from omegaconf import DictConfig

from egt.artifacts import content_fingerprint, make_key
from egt.distill.fidelity import FidelityState, Timer, fidelity_stats, run_fidelity_filter
from egt.distill.progress import DistillProgress
from egt.distill.teacher import RequestBudget, Teacher
from egt.errors import ConfigError
from egt.stages import data as data_stage
from egt.utils.atomic import save_dataset_atomic, write_json_atomic
from egt.utils.io import Journal

log = logging.getLogger(__name__)
REQUIRES = ("data",)  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 2  # 2: failures/retries by cause, requests and tokens in stats.json
TRAJECTORY_FEATURES = Features({"id": Value("string"), "target": Value("string"), "attempts": Value("int64")})


def make_teacher(cfg: DictConfig) -> Teacher:
    teacher = hydra.utils.instantiate(cfg.distill.teacher)
    if not isinstance(teacher, Teacher):
        raise TypeError(f"distill.teacher._target_ must build an egt.distill.teacher.Teacher, got {type(teacher)}")
    return teacher


def noise_breakdown(samples: list[dict], kept: set[str]) -> dict[str, Any]:
    """In the synthetic world: how many flipped / ambiguous samples the filter kept."""
    out: Counter = Counter()
    for s in samples:
        meta = json.loads(s.get("meta") or "{}")
        for flag in ("flipped", "ambiguous"):
            if meta.get(flag):
                out[f"{flag}_seen"] += 1
                out[f"{flag}_kept"] += s["id"] in kept
    return dict(out)


def _distil(cfg: DictConfig, teacher: Teacher, samples: list[dict], journal: Journal) -> tuple[FidelityState, float]:
    """Run (or resume) the fidelity filter with a progress bar; the state covers the whole journal."""
    d = cfg.distill
    before = FidelityState.from_records(journal.read())
    decided = {i for i in (s["id"] for s in samples) if before.next_attempt(i, d.max_attempts) is None}
    kept = sum(i in before.kept for i in decided)
    if decided:
        log.info("[distill] resuming: %d of %d samples already decided (%d kept)", len(decided), len(samples), kept)
    budget = RequestBudget(d.max_requests)
    with Timer() as t, DistillProgress(len(samples) - len(decided), d.max_attempts, kept, len(decided) - kept) as bar:
        state = run_fidelity_filter(
            teacher,
            samples,
            journal,
            d.max_attempts,
            d.batch_size,
            progress=bar,
            concurrency=d.concurrency,
            budget=budget,
            on_bad_sample=cfg.data.on_bad_sample,
        )
    return state, t.seconds


def unused(cfg: DictConfig) -> str | None:
    """Why the pipeline skips this stage in a run that lists it (egt.pipeline.Pipeline.run): SFT is in the
    run but replaced by ``sft.model_path``, the only reader of the trajectories. None: it runs."""
    if cfg.sft.model_path and "sft" in cfg.stages and not cfg.distill.trajectories_path:
        return "sft.model_path is set, so SFT does not run and nothing reads the trajectories"
    return None


def run(cfg: DictConfig, pipe) -> dict[str, Any]:
    if cfg.distill.trajectories_path:
        path = cfg.distill.trajectories_path
        log.info("[distill] using outside trajectories %s", path)
        key = f"external-{content_fingerprint(path)}"  # by content: two trajectory files never share SFT
        return {"key": key, "path": path, "reused": True, "summary": {}, "trajectories_path": path}
    data = pipe.get("data")
    if (data.get("splits") or {}).get("sft_pool", {}).get("n") == 0:  # before any artifact is opened
        only_rl = ": R1-Reward-RL is an RL pool only" if cfg.data.name == "r1_reward_rl" else ""
        raise ConfigError(
            f"distill: the data set's sft_pool is empty (data={cfg.data.name}{only_rl}): give the "
            "judge to start RL from (sft.model_path=…), or SFT sources "
            "(data.sources.sft_pool=[{path: …}], docs/data.md)"
        )
    teacher = make_teacher(cfg)
    conf = {"teacher": teacher.public_config(), "max_attempts": cfg.distill.max_attempts, "limit": cfg.distill.limit}
    key = make_key("distill", conf, upstream={"data": data["key"]}, version=VERSION)
    with pipe.store.open("distill", key) as art:
        if not art.reused:
            teacher.check()  # an unreachable endpoint fails here, before any work
            pool = data_stage.load(data)["sft_pool"]
            if cfg.distill.limit:
                pool = pool.select(range(min(cfg.distill.limit, len(pool))))
            samples = list(pool)
            state, seconds = _distil(cfg, teacher, samples, Journal(art.path / "journal.jsonl"))
            stats = fidelity_stats(state, samples, cfg.distill.max_attempts, seconds)
            stats.update(noise_breakdown(samples, set(state.kept)))
            # one row per kept sample id, from the journal: a resumed run cannot duplicate one
            kept = [state.kept[s["id"]] for s in samples if s["id"] in state.kept]
            cols = {
                "id": [r["id"] for r in kept],
                "target": [r["output"] for r in kept],
                "attempts": [r["attempt"] for r in kept],
            }
            save_dataset_atomic(Dataset.from_dict(cols, features=TRAJECTORY_FEATURES), art.path / "trajectories")
            write_json_atomic(art.path / "stats.json", stats)
            log.info("[distill] %s", stats)
            art.finish(stats, {"config": conf})
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "trajectories_path": str(art.path / "trajectories"),
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary); none for outside
    trajectories."""
    s = summary
    return f"kept {s['kept']:,} of {s.get('seen', '?'):,} trajectories" if "kept" in s else ""


def load(result: dict[str, Any]) -> Dataset:
    return load_from_disk(result["trajectories_path"])
