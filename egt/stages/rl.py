"""rl stage (paper §2.4, docs/design.md §5): StableReinforce or GRPO on the selected samples, in the
curriculum's order, starting from the SFT model (the rft stage's when ``rft`` is in ``stages``).

Input: the sft stage's model (or rft's), the select stage's ``selection.json`` (or ``rl.selection_path``;
``selection=all`` trains on all of ``rl_pool``). Output at ``<artifact>/``:
``model/`` (HF model directory + processor), ``curves.json`` (every logged term per step, the
sample ids of each step and a few completions) and, with ``rl.eval_n > 0``, ``bench_eval.json``.
Killed runs resume from ``checkpoints/last.ckpt`` (optimizer, scheduler, sampler position,
rollout counter that seeds the RNG), written only at update boundaries (with refill, never while kept
groups wait in the buffer: a resume draws them again with the same seeds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from datasets import Dataset
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from egt import distributed
from egt.artifacts import make_key
from egt.components import build
from egt.config import ConfigError, to_container
from egt.data.encode import ChatEncoder, image_tokens
from egt.data.prompt import template_key
from egt.data.schema import BadSampleError
from egt.models.liger import key_extras as liger_key
from egt.models.liger import maybe_apply as maybe_apply_liger
from egt.models.resolve import load_configured, load_for_training, pixel_budget
from egt.rl.module import RLModule
from egt.select.curriculum import Curriculum, make_sampler
from egt.select.methods import Selection
from egt.select.online import OnlineCurriculumSampler, Reprobe
from egt.select.reprobe import OnlineOrder, reprobe_settings
from egt.select.scores import EntropyScore
from egt.select.two_stage import HintedRows
from egt.stages import data as data_stage
from egt.stages.probe import key_config as probe_key
from egt.training import recipe
from egt.judge.card import judge_card
from egt.training.trained import bench_eval, save_model
from egt.utils.atomic import write_json_atomic
from egt.utils.fmt import num, pct
from egt.utils.secrets import config_container

log = logging.getLogger(__name__)
REQUIRES = ("data", "sft", "probe", "rft", "select")  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 1
# Settings that change how RL is run or reported, not the model it produces.
NOT_IN_KEY = (
    "checkpoint_every_n_steps",
    "log_examples",
    "eval_n",
    "eval_max_new_tokens",
    "eval_batch_size",
    "selection_path",
    "logprob_batch_size",
    "logprob_chunk_size",
    "shared_prompt_pass",
    "packing",
    "packing_max_tokens",
    "gather_for_generation",
)


class RolloutCheckpoint(Callback):
    """``last.ckpt`` every ``every`` updates (optimizer steps per update vary, so Lightning's step-based
    ModelCheckpoint would miss some), at an update boundary only: with refill, not while rollout batches
    wait in the buffer (a resume then redraws them with the same seeds and prompts); after an update
    skipped for lack of kept groups, again (the sampler has moved on)."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, every

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        if self.every > 0 and pl_module.at_update_boundary and pl_module.updates % self.every == 0:
            trainer.save_checkpoint(self.path)


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    data, sft = pipe.get("data"), pipe.get("sft")
    rl_pool = data_stage.load(data)["rl_pool"]
    selection, select_key = load_selection(cfg, pipe)
    conf = key_config(cfg)
    start = start_model(cfg, pipe)  # the SFT judge, or the rft stage's model when rft is in `stages`
    upstream = upstream_keys(data, sft, select_key, start)
    reprobe = reprobe_settings(cfg)
    pool = None
    if reprobe is not None:  # the online curriculum (static runs keep their keys: nothing added)
        conf["online_curriculum"] = reprobe_key(cfg, reprobe)
        if reprobe.online_selection:  # re-selects from the pool the select stage chose from
            pool = pipe.get("probe")
            upstream["probe"] = pool["key"]
    key = make_key("rl", conf, upstream=upstream, version=VERSION)
    with pipe.store.open("rl", key, ranks="all") as art:  # every rank trains (DDP / DeepSpeed)
        if not art.reused:
            online = None
            if reprobe is not None:
                ds, online = online_samples(cfg, rl_pool, selection, reprobe, pool)
            else:
                ds = ordered_samples(rl_pool, selection, cfg)
            summary = train(cfg, art.path, Path(start["model_path"]), ds, selection, data, online)
            art.finish(summary, {"config": conf, "upstream": upstream}, drop=recipe.dropped_when_finished(cfg))
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "model_path": str(art.path / "model"),
    }


def key_config(cfg: DictConfig) -> dict[str, Any]:
    """The config part of the RL key (the online curriculum's settings are added by :func:`run`): ``cfg.rl``
    less NOT_IN_KEY, the reward, seed, prompt template, model settings; ``data.hints`` only when set (the
    curriculum's stages are in the select key, upstream); a group filter's refill settings
    (``rl.filter.refill``, ``rl.filter.max_tries``) only with refill on. Unset, each leaves the key the one
    from before it existed."""
    conf = {k: v for k, v in to_container(cfg.rl).items() if k not in NOT_IN_KEY}
    if isinstance(conf.get("filter"), dict) and conf["filter"].get("refill") is False:
        conf["filter"] = {k: v for k, v in conf["filter"].items() if k not in ("refill", "max_tries")}
    conf.update(
        reward=config_container(cfg.reward),  # redacted: a judge's secrets as ***, variables by name
        seed=rl_seed(cfg),
        template=template_key(cfg.data.template),
        on_bad_sample=cfg.data.on_bad_sample,
        trainer=to_container(cfg.trainer),
        dtype=cfg.model.dtype,
        freeze_vision=cfg.model.freeze_vision,
        **pixel_budget(cfg),
        **liger_key(cfg),  # absent when model.liger=false: the key from before it existed
    )
    if cfg.data.get("hints") is not None:  # unset, the key is the one from before hints existed
        conf["hints"] = cfg.data.hints
    return conf


def start_model(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    """The judge RL starts from (and its frozen KL reference): the rft stage's result when ``rft`` is in
    ``cfg.stages`` (UnifiedReward-Think's recipe), else the sft stage's; both have ``key`` and ``model_path``."""
    return pipe.get("rft") if "rft" in [str(s) for s in cfg.stages] else pipe.get("sft")


def upstream_keys(data: dict, sft: dict, select_key: str, start: dict) -> dict[str, str]:
    """The upstream part of the RL key: data, the SFT judge (an outside model's key is its content
    fingerprint) and the selection; and the rft stage's key when RL starts from its model (``start``) —
    only then, so runs without rft keep their keys."""
    upstream = {"data": data["key"], "sft": sft["key"], "select": select_key}
    if start is not sft:
        upstream["rft"] = start["key"]
    return upstream


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary): the updates (``steps``:
    rollout batches trained on) and, where they differ, the optimizer steps (mini-batches), the reward.

    >>> summary_line({"steps": 3, "optimizer_steps": 6, "reward_first": 0.5, "reward_last": 1.0})
    '3 updates (6 optimizer steps), reward 0.500 -> 1.000'
    >>> summary_line({"steps": 1, "optimizer_steps": 1, "reward_first": 0.0, "reward_last": 0.0})
    '1 update, reward 0.000 -> 0.000'
    """
    s = summary
    if "steps" not in s:
        return ""
    bench = f"bench accuracy {pct(s['bench_accuracy'])}, " if "bench_accuracy" in s else ""
    online = f", {s['reprobes']} re-probes ({s.get('reprobe_seconds')} s)" if s.get("reprobes") else ""
    n = s["steps"]  # updates: one rollout batch (its groups kept) each
    updates = f"{n} update{'' if n == 1 else 's'}"
    if s.get("optimizer_steps") not in (None, n):
        updates += f" ({s['optimizer_steps']} optimizer steps)"
    return f"{bench}{updates}, reward {num(s.get('reward_first'))} -> {num(s.get('reward_last'))}{online}"


def rl_seed(cfg: DictConfig) -> int:
    """``rl.seed`` if set, else the top-level ``seed``: a seed sweep over ``rl.seed`` varies RL
    alone while SFT and probing (keyed on ``seed``) stay shared."""
    return int(cfg.rl.seed if cfg.rl.get("seed") is not None else cfg.seed)


def reprobe_needs_gather(trainer: Any, gather_for_generation: bool) -> bool:
    """True where the online curriculum's re-probe cannot run: ZeRO-3 over several ranks with
    ``rl.gather_for_generation=false``. Partitioned, each forward all-gathers each module's weights (a
    collective every rank must enter), and ``probe_with`` gives the ranks different shards, so their numbers
    of forwards differ; with the policy gathered once around the re-probe (``egt.select.reprobe``) its
    forwards run no collective. Checked with DeepSpeed's ZeRO-3 on 2 CPU ranks and uneven shards
    (tests/helpers/ds_zero3_rollout.py)."""
    zero3 = bool(getattr(getattr(trainer, "strategy", None), "zero_stage_3", False))
    return zero3 and trainer.world_size > 1 and not gather_for_generation


def reprobe_key(cfg: DictConfig, reprobe: Reprobe) -> dict[str, Any]:
    """What the online curriculum adds to the RL key (nothing for the static one): its settings, the
    probe settings of the re-probes and the score / method / curriculum that re-rank."""
    return {
        "reprobe_every": reprobe.every,
        "online_selection": reprobe.online_selection,
        "max_change": reprobe.max_change,
        "probe": probe_key(cfg),
        "entropy": to_container(cfg.entropy),
        "selection": to_container(cfg.selection),
        "curriculum": to_container(cfg.curriculum),
    }


def load_selection(cfg: DictConfig, pipe: Any) -> tuple[dict[str, Any], str]:
    """(selection dict, its identity for the artifact key): ``rl.selection_path``, else the
    select stage's."""
    if cfg.rl.selection_path:
        raw = Path(cfg.rl.selection_path).expanduser().read_bytes()
        log.info("[rl] training on the selection in %s", cfg.rl.selection_path)
        return json.loads(raw), "file:" + hashlib.sha256(raw).hexdigest()[:12]
    result = pipe.get("select")
    return json.loads(Path(result["selection_path"]).read_text()), result["key"]


def ordered_samples(rl_pool: Dataset, selection: dict[str, Any], cfg: DictConfig) -> Dataset:
    """rl_pool rows in the selection's order (row i = selection["ids"][i])."""
    ids = [str(i) for i in selection.get("ids") or []]
    if not ids:
        raise ConfigError(
            "the selection is empty: RL has nothing to train on. Select more samples "
            "(e.g. selection.fraction=0.15, selection.k=2500 or selection=all)"
        )
    where = {str(sid): i for i, sid in enumerate(rl_pool["id"])}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(
            f"{len(missing)} selected ids are not in rl_pool (e.g. {missing[:3]}): the selection was made on other data"
        )
    return rl_pool.select([where[i] for i in ids])


def online_samples(
    cfg: DictConfig, rl_pool: Dataset, selection: dict[str, Any], reprobe: Reprobe, pool: dict[str, Any] | None
) -> tuple[Dataset, dict[str, Any]]:
    """The RL data set of an online curriculum and what :class:`egt.select.reprobe.OnlineOrder` needs:
    the selected samples in epoch 0's order, or (online selection) every sample of the probe stage's
    table, in its order, with epoch 0's selection among them."""
    parts = {
        "score": build(cfg.entropy.score, EntropyScore, "entropy.score"),
        "curriculum": build(cfg.curriculum.order, Curriculum, "curriculum.order"),
        "method": None,
        "first_scores": _scores(selection),
    }
    if pool is None:
        return ordered_samples(rl_pool, selection, cfg), parts
    table = pd.read_parquet(pool["table_path"])
    parts["method"] = build(cfg.selection.method, Selection, "selection.method")
    parts["first_scores"] = dict(zip(table["id"].astype(str), parts["score"](table).tolist()))
    return ordered_samples(rl_pool, {"ids": list(table["id"].astype(str))}, cfg), parts


def _check_prompts(
    ds: Dataset, encoder: ChatEncoder, on_bad: str, hint: str | None = None, hinted: frozenset = frozenset()
) -> tuple[Dataset, list[str]]:
    """Fail (or skip, ``data.on_bad_sample=skip``) before training on prompts that cannot be encoded; a
    sample in ``hinted`` is checked with ``hint`` in its prompt (the longer one RL's stage 2 encodes)."""
    bad: list[str] = []
    for i, sample in enumerate(ds):
        try:
            encoder.encode_prompt({**sample, "hint": hint} if hint and sample["id"] in hinted else sample)
        except BadSampleError as e:
            if on_bad != "skip":
                raise
            log.warning("[rl] skipping %s: %s", sample.get("id"), e)
            bad.append(i)
    dropped = set(bad)
    keep = [i for i in range(len(ds)) if i not in dropped]
    return (ds.select(keep) if bad else ds), [ds[i]["id"] for i in bad]


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


def train(
    cfg: DictConfig,
    out: Path,
    model_path: Path,
    ds: Dataset,
    selection: dict[str, Any],
    data: dict,
    online: dict[str, Any] | None = None,
) -> dict[str, Any]:
    r = cfg.rl
    model, processor = load_for_training(model_path, cfg)
    encoder = ChatEncoder(processor, template=cfg.data.template, max_length=r.max_length, length_key="rl.max_length")
    hints, stages = _two_stage(cfg, selection)
    hard = frozenset(str(i) for i in stages["hard"]) if stages else frozenset()
    ds, skipped = _check_prompts(ds, encoder, cfg.data.on_bad_sample, hints, hard)
    if skipped:
        gone = set(skipped)
        selection = {**selection, "ids": [i for i in selection["ids"] if i not in gone]}
        if stages:
            selection["stages"] = stages = {**stages, "hard": [i for i in stages["hard"] if i not in gone]}
    if len(ds) == 0 or not selection["ids"]:
        raise ConfigError("no selected sample can be encoded: nothing to train on")
    if stages and len(stages["hard"]) >= len(selection["ids"]):
        raise ConfigError("curriculum=two_stage: no moderate sample is left for stage 1 (lower curriculum.order.split)")
    ref = None
    if r.kl_coef > 0:  # the frozen reference is the starting (SFT) model
        ref = maybe_apply_liger(load_configured(model_path, cfg), cfg).eval().requires_grad_(False)
    stage1 = _stage1_length(r, stages)
    sampler, order = _sampler(cfg, out, ds, processor, selection, online, hinted=bool(hints), stage1_length=stage1)
    local_batch = distributed.split_batch(r.batch_size)  # rl.batch_size prompts per rollout over all ranks
    rows = HintedRows(ds, hints) if hints else ds  # row len(ds) + i: row i with the hint (stage-2 hard rows)
    loader = DataLoader(rows, batch_size=local_batch, sampler=sampler, collate_fn=_as_list, num_workers=0)
    opt_steps = _plan(r, len(ds), _batches_per_epoch(sampler, r.epochs, local_batch), stages)
    module = RLModule.from_config(
        cfg,
        model,
        encoder,
        sampler,
        ref_model=ref,
        scores=_scores(selection),
        warmup_steps=int(r.warmup_ratio * opt_steps),
        seed=rl_seed(cfg),
        max_updates=r.max_steps,
    )
    if module.refill is not None:
        log.info(
            "[rl] refill: each update draws rollout batches of %d prompts until %d groups are kept (at most %d "
            "batches); rl.max_steps counts updates, and the plan above (warmup included) counts one update "
            "per rollout batch, %s",
            r.batch_size,
            r.batch_size,
            module.refill.max_tries,
            "exact while the data lasts" if r.max_steps > 0 else "an upper bound (rl.max_steps=-1)",
        )
    last = out / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True, exist_ok=True)

    def before_fit(trainer: L.Trainer, logger: Any) -> None:
        if order is None:
            return
        order.model, order.logger, order.step = module.model, logger, lambda: module.rollouts
        order.engine = module.deepspeed_engine  # read when a re-probe runs: the engine exists by then
        if reprobe_needs_gather(trainer, bool(cfg.rl.get("gather_for_generation", True))):
            raise ConfigError(
                "curriculum.reprobe_every>0 under ZeRO-3 on several ranks needs rl.gather_for_generation=true: "
                "partitioned, every forward all-gathers each module's weights across the ranks, and the ranks' "
                "re-probe shards differ in number of generate calls (a hang); gathered once, the re-probe's "
                "forwards run no collective. Or use trainer=deepspeed_zero2 / ddp, or curriculum.reprobe_every=0"
            )

    def summarize(trainer: L.Trainer, resumed: bool) -> dict[str, Any]:
        summary = {
            "rank": trainer.global_rank,
            "n_selected": len(ds),
            "skipped": len(skipped),
            "steps": module.updates,
            "optimizer_steps": trainer.global_step,
            "rollout_batches": module.rollouts,  # refills included: the RL stage's generation cost
            "prompts_generated": module.prompts_generated * trainer.world_size,
            "resumed": resumed,
            "processes": trainer.world_size,
            **image_tokens(encoder),
            **module.generation_summary(),
        }
        if module.refill is not None:
            summary.update(_refill_summary(module.history, r.max_steps, module.updates))
        if order is not None:
            summary.update(_reprobe_summary(order.summary(), _seconds_per_epoch(module.history)))
        if stages:
            summary.update(
                stage1_samples=len(selection["ids"]) - len(stages["hard"]),
                stage2_samples=len(selection["ids"]),
                hard_samples=len(stages["hard"]),
                hinted=bool(hints),
            )
        return summary

    def finish(trainer: L.Trainer, logger: Any, state: dict | None) -> dict[str, Any]:
        return _finish(cfg, out, module, processor, data, logger, state, model_path)

    return recipe.fit(
        cfg,
        "rl",
        module,
        out,
        loader,
        checkpoint=last,
        callbacks=[RolloutCheckpoint(last, r.checkpoint_every_n_steps)],
        progress_metric="rl/reward",
        summarize=summarize,
        finish=finish,
        before_fit=before_fit,
        clip_gradients=False,  # manual optimisation clips itself (rl.max_grad_norm)
        max_epochs=r.epochs,
        log_every_n_steps=1,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )


def _two_stage(cfg: DictConfig, selection: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(``data.hints``, the selection's ``stages``) of a two-stage curriculum (egt.select.two_stage), checked
    against ``rl.epochs`` here too: a selection from ``rl.selection_path`` was not made by this config."""
    hints, stages = cfg.data.get("hints"), selection.get("stages")
    if hints and not stages:
        raise ConfigError(
            "data.hints is added to the hard samples of a two-stage selection's second stage, and this "
            "selection has no stages: select with curriculum=two_stage, or write data.hints=null"
        )
    if stages and cfg.rl.epochs <= int(stages["stage1_epochs"]):
        raise ConfigError(
            f"the selection is two-stage with {stages['stage1_epochs']} stage-1 epoch(s): rl.epochs={cfg.rl.epochs} "
            f"leaves no second stage; write rl.epochs={int(stages['stage1_epochs']) + 1} (or more)"
        )
    return hints, stages


def _stage1_length(r: DictConfig, stages: dict[str, Any] | None) -> int | None:
    """Stage 1's samples (global) of a two-stage selection whose stage 1 is a share of the budget
    (``curriculum.order.stage1_share``): ⌈share × ``rl.max_steps``⌉ rollout batches of ``rl.batch_size``
    prompts; None for an epochs-long stage 1.

    >>> from omegaconf import OmegaConf
    >>> _stage1_length(OmegaConf.create({"max_steps": 19, "batch_size": 8}), {"stage1_share": 0.5})
    80
    """
    if not stages or stages.get("stage1_share") is None:
        return None
    if r.max_steps <= 0:
        raise ConfigError(
            f"curriculum.order.stage1_share={stages['stage1_share']} is a share of the RL budget in updates: "
            "set rl.max_steps (e.g. rl.max_steps=38), or write curriculum.order.stage1_share=null"
        )
    return math.ceil(float(stages["stage1_share"]) * r.max_steps) * r.batch_size


def _batches_per_epoch(sampler: Any, epochs: int, local_batch: int) -> list[int]:
    """This rank's rollout batches in each epoch (a two-stage sampler's epochs differ in length)."""
    sizes = [sampler.epoch_length(e) for e in range(epochs)] if hasattr(sampler, "epoch_length") else [len(sampler)]
    return [math.ceil(n / local_batch) for n in sizes] * (1 if len(sizes) == epochs else epochs)


def _sampler(
    cfg: DictConfig,
    out: Path,
    ds: Dataset,
    processor: Any,
    selection: dict[str, Any],
    online: dict[str, Any] | None,
    hinted: bool = False,
    stage1_length: int | None = None,
) -> tuple[Any, OnlineOrder | None]:
    """This rank's sampler over ``ds``: the static curriculum's (egt.select.curriculum; ``hinted``: a
    two-stage one's stage-2 hard rows point into :class:`HintedRows`), or the online one's with the
    :class:`OnlineOrder` that re-probes (its model and logger are set before fit)."""
    if online is None:
        sampler, order = make_sampler(selection, len(ds), hinted=hinted, stage1_length=stage1_length), None
    else:
        order = OnlineOrder(
            cfg,
            out,
            ds,
            processor,
            reprobe_settings(cfg),
            [str(i) for i in selection["ids"]],
            online["first_scores"],
            online["score"],
            online["curriculum"],
            online["method"],
        )
        sampler = OnlineCurriculumSampler(len(selection["ids"]), order, seed=rl_seed(cfg))
        if cfg.rl.backend is not None and "vllm" in str(cfg.rl.backend.get("_target_", "")).lower():
            log.info("[rl] re-probes generate with the policy's HF model, not the vLLM engine")
    return sampler.shard(distributed.rank(), distributed.world_size()), order


def _plan(r: DictConfig, n: int, per_epoch: list[int], stages: dict[str, Any] | None = None) -> int:
    """Log the run's size (``n`` samples, ``per_epoch[e]`` rollout batches in epoch e); returns its optimizer
    steps (what ``rl.warmup_ratio`` is a fraction of): ``rl.max_steps`` updates of ``ppo_epochs`` ×
    ``num_mini_batches`` steps each, or one update per rollout batch of every epoch (with refill an update
    may take several rollout batches: then an upper bound). A two-stage run whose ``rl.max_steps`` ends it
    before stage 2 is refused."""
    total = sum(per_epoch)
    rollouts = min(r.max_steps, total) if r.max_steps > 0 else total
    if stages:
        stage1 = sum(per_epoch[: int(stages["stage1_epochs"])])
        if rollouts <= stage1:
            raise ConfigError(
                f"rl.max_steps={r.max_steps} ends the run within curriculum=two_stage's first stage "
                f"({stage1} rollout batches): write rl.max_steps={stage1 + 1} or more (or -1: every epoch)"
            )
    opt_steps = rollouts * r.ppo_epochs * min(r.num_mini_batches, r.batch_size * r.group_size)
    if n % r.batch_size:
        log.info(
            "[rl] %d samples do not fill batches of %d: the last rollout batch of each epoch has %d prompts",
            n,
            r.batch_size,
            n % r.batch_size,
        )
    log.info(
        "[rl] %d samples, %s rollout batches/epoch × %d epochs (%d rollouts), G=%d, %d optimizer steps",
        n,
        per_epoch[0] if len(set(per_epoch)) == 1 else "/".join(map(str, per_epoch)),
        r.epochs,
        rollouts,
        r.group_size,
        opt_steps,
    )
    return opt_steps


def _scores(selection: dict[str, Any]) -> dict[str, float]:
    """The selection's score of each selected sample (selection.json ``scores``; null = +inf, no answer)."""
    return {str(k): (math.inf if v is None else float(v)) for k, v in (selection.get("scores") or {}).items()}


def _reprobe_summary(reprobes: list[dict[str, Any]], rl_seconds: list[float]) -> dict[str, Any]:
    """The online curriculum's part of the RL summary: every re-probe (``reprobe``), seconds of RL per
    epoch beside seconds of re-probing, and the last re-probe's headline numbers as scalars (what the
    pipeline summary prints)."""
    out: dict[str, Any] = {
        "reprobe": reprobes,
        "rl_seconds_per_epoch": rl_seconds,
        "reprobes": len(reprobes),
        "reprobe_seconds": round(sum(r["seconds"] for r in reprobes), 1),
        "rl_seconds": round(sum(rl_seconds), 1),
    }
    if reprobes:
        last = reprobes[-1]
        for k in ("spearman_first", "spearman_previous", "overlap_previous", "flipped_kept", "ambiguous_kept"):
            if k in last:
                out[f"reprobe_last_{k}"] = last[k]
    return out


def _refill_summary(history: list[dict[str, Any]], max_steps: int, updates: int) -> dict[str, Any]:
    """Refill's totals over the run (from the per-update history), with a warning when the data ran out
    before ``rl.max_steps`` updates (a method comparison at the same optimizer-step budget needs them all)."""
    if 0 < max_steps and updates < max_steps:
        log.warning(
            "[rl] refill: the data ran out after %d of rl.max_steps=%d updates: raise rl.epochs for the same "
            "optimizer-step budget as a run without refill",
            updates,
            max_steps,
        )
    return {
        "updates_skipped": int(sum(h.get("rl/update_skipped", 0.0) for h in history)),
        "groups_dropped": int(sum(h.get("rl/groups_dropped", 0.0) for h in history)),
        "groups_surplus": int(sum(h.get("rl/groups_surplus", 0.0) for h in history)),
    }


def _seconds_per_epoch(history: list[dict[str, Any]]) -> list[float]:
    """Σ step seconds of each epoch (history entries carry their epoch), to set beside re-probe seconds."""
    out: dict[int, float] = {}
    for h in history:
        out[int(h.get("epoch", 0))] = out.get(int(h.get("epoch", 0)), 0.0) + float(h["rl/step_s"])
    return [round(out.get(e, 0.0), 2) for e in range(max(out) + 1)] if out else []


def _finish(
    cfg: DictConfig,
    out: Path,
    module: RLModule,
    processor: Any,
    data: dict,
    logger: Any,
    state: dict | None = None,
    started_from: Path | None = None,
) -> dict[str, Any]:
    """Save the HF model dir atomically (with its judge card, egt.judge.card) and the curves; measure the
    reloaded model on the bench."""
    save_model(out, module.model, processor, state, judge_card(cfg, "rl", started_from, processor, data))
    write_json_atomic(out / "curves.json", {"steps": module.history})
    summary: dict[str, Any] = {}
    hist = module.history
    if hist:
        k = max(1, len(hist) // 5)
        for name in ("reward", "acc", "logic", "format"):
            summary[f"{name}_first"] = round(sum(h[f"rl/{name}"] for h in hist[:k]) / k, 4)
            summary[f"{name}_last"] = round(sum(h[f"rl/{name}"] for h in hist[-k:]) / k, 4)
        summary["seconds_per_step"] = round(sum(h["rl/step_s"] for h in hist) / len(hist), 3)
    if cfg.rl.eval_n > 0:
        summary.update(bench_eval(cfg, "rl", out / "model", data, logger, module.rollouts))
    return summary
