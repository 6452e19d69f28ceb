"""Early validation (:func:`validate`): what a type cannot express — known stage names, ranges, options that
must go together, and the local paths the stages of this run read (egt.preflight) — checked before any stage
runs, each error naming the key and what to write instead."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from egt.choices import shared_prompt_mode
from egt.config.schema import EgtConfig, PositionBiasLimits, SFTConfig
from egt.errors import ConfigError
from egt.preflight import check_paths, stages_to_run
from egt.stages import MODEL_STAGES, STAGES
from egt.utils.conf import to_container

log = logging.getLogger(__name__)


def _did_you_mean(value: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, options, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"'{value}' is not one of {list(options)}.{hint}"


def _check_choice(where: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{where}: {_did_you_mean(value, options)}")


def _schema_class(tp: Any) -> type | None:
    """The dataclass behind a field type (``X`` or ``Optional[X]``), else None."""
    for t in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(t):
            return t
    return None


def unknown_keys(node: Any, schema: type, where: str = "") -> list[str]:
    """Keys of ``node`` that the dataclass ``schema`` does not define, recursively, each with a "did
    you mean" hint. Hydra's ``+key=value`` adds such keys without complaint, and no stage would read
    them (e.g. ``+model.max_pixels=…`` before model.max_pixels existed)."""
    if not isinstance(node, DictConfig):
        return []
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    out = []
    for key in node.keys():
        name = f"{where}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            out.append(f"{name}" + (f" (did you mean {where}{close[0]}?)" if close else ""))
            continue
        sub = _schema_class(hints.get(key))
        if sub is not None and not OmegaConf.is_missing(node, key):
            out += unknown_keys(node[key], sub, f"{name}.")
    return out


def _ranks_every_sample(method: Any) -> bool:
    """Whether a selection method's class ranks the whole pool and is sized (so it needs k / fraction /
    percentile), rather than keeping everything (``sized = False``) or filtering (``filters = True``)."""
    try:
        import hydra.utils

        cls = hydra.utils.get_class(str(method["_target_"]))
    except Exception:  # building it reports a bad _target_ with its own message
        return False
    return bool(getattr(cls, "sized", True)) and not getattr(cls, "filters", False)


def _validate_model_kernels(cfg: DictConfig) -> None:
    """model.liger needs liger-kernel installed (the CUDA check is at load time: the launcher may have no
    GPU); model.attn_implementation=egt_varlen logs which attention will run (egt.models.attention)."""
    if cfg.model.get("liger", False):
        from egt.models.liger import liger_version

        if liger_version() is None:
            raise ConfigError(
                "model.liger=true needs the liger-kernel package: pip install egt[liger] (CUDA machines), "
                "or write model.liger=false"
            )
    if str(cfg.model.attn_implementation) == "egt_varlen":
        from egt.models.attention import varlen_backend

        backend, why = varlen_backend(dtype=str(cfg.model.dtype))
        log.info(
            "model.attn_implementation=egt_varlen: %s",
            f"varlen attention with {why}" if backend else f"{why}; sdpa will run",
        )


def validate(cfg: DictConfig) -> None:
    """Check a composed config before any heavy work; raise ConfigError if it cannot run."""
    sections = {name: _schema_class(tp) for name, tp in typing.get_type_hints(EgtConfig).items()}
    unknown = [
        k
        for name, schema in sections.items()
        if schema is not None and name in cfg
        for k in unknown_keys(cfg[name], schema, f"{name}.")
    ]
    if unknown:
        raise ConfigError(
            "unknown config keys (no stage reads them): "
            + "; ".join(unknown)
            + ". Remove them or fix the spelling (python train.py --cfg job shows every key)"
        )
    if not cfg.stages:
        raise ConfigError("stages is empty: write e.g. stages=[data,distill,sft]")
    for stage in cfg.stages:
        _check_choice("stages", str(stage), STAGES)
    for stage in cfg.eval.models:
        _check_choice("eval.models", str(stage), MODEL_STAGES)
    _validate_sources(cfg)
    if OmegaConf.is_missing(cfg.model, "path"):
        raise ConfigError(
            f"model={cfg.model.name} needs a local directory: write model.path=/path/to/model "
            "(nothing is downloaded at run time)"
        )
    if cfg.model.path is None and cfg.model.build is None:
        raise ConfigError(
            f"model '{cfg.model.name}' has neither a path nor a build spec: write "
            "model.path=/path/to/hf/vlm (or model=/path/to/hf/vlm), or model=tiny / model=demo"
        )
    _validate_model_kernels(cfg)
    if cfg.distill.max_attempts < 1:
        raise ConfigError("distill.max_attempts must be >= 1 (the paper uses 3)")
    teacher = cfg.distill.teacher
    missing = sorted(OmegaConf.missing_keys(teacher)) if isinstance(teacher, DictConfig) else []
    if missing and "distill" in cfg.stages and not cfg.distill.trajectories_path:
        raise ConfigError(
            "the distill teacher needs "
            + ", ".join(f"{k}=…" for k in missing)
            + " (e.g. distill.teacher.base_url=http://host:8000/v1 distill.teacher.model=NAME)"
        )
    _check_teacher_has_its_data(cfg)
    if cfg.distill.concurrency < 1:
        raise ConfigError("distill.concurrency must be >= 1 (requests in flight)")
    if cfg.distill.max_requests is not None and cfg.distill.max_requests < 1:
        raise ConfigError("distill.max_requests must be >= 1, or null for no cap")
    s = cfg.sft
    if not 0.0 <= s.val_fraction < 1.0:
        raise ConfigError(f"sft.val_fraction={s.val_fraction} must be in [0, 1)")
    if not 0.0 <= s.warmup_ratio < 1.0:
        raise ConfigError(f"sft.warmup_ratio={s.warmup_ratio} must be in [0, 1)")
    if s.lr <= 0 or s.batch_size < 1 or s.epochs < 1:
        raise ConfigError("sft.lr must be > 0, sft.batch_size >= 1 and sft.epochs >= 1")
    if s.chunk_size is not None and s.chunk_size < 1:
        raise ConfigError(f"sft.chunk_size={s.chunk_size} must be >= 1 (positions per output-head chunk)")
    _validate_packing(cfg)
    _validate_probe_select(cfg)
    _validate_rft(cfg)
    _validate_entropy_probe(cfg)
    _validate_selection_probe(cfg)
    _validate_online(cfg)
    _validate_two_stage(cfg)
    _validate_eval(cfg)
    _validate_rl(cfg)
    _validate_trainer(cfg)
    if "cpu" == cfg.trainer.accelerator and "bf16" in str(cfg.trainer.precision):
        raise ConfigError(
            "bf16 on this CPU is ~28x slower than fp32: use trainer.precision=32-true on CPU "
            "(trainer=cpu), bf16-mixed on GPU (trainer=gpu)"
        )
    check_paths(cfg)  # last: the local paths the stages of this run read exist (egt.preflight)


def _validate_packing(cfg: DictConfig) -> None:
    """sft.packing (and rft.sft's override of it): an attention implementation that blocks per packed
    sequence, and a row budget the implementation can take (egt.sft.packing.validate)."""
    from egt.sft.packing import validate as validate_packing

    attn = str(cfg.model.attn_implementation)
    if attn == "auto":  # what it resolves to here (egt.models.resolve.resolve_attn): flash's one-row limit applies
        attn = _auto_attn()
    try:
        validate_packing(bool(cfg.sft.packing), cfg.sft.packing_max_tokens, attn, "sft")
        over = cfg.rft.get("sft") if "rft" in cfg else None
        if over is not None and ("packing" in over or "packing_max_tokens" in over):
            packing = over.get("packing", cfg.sft.packing)
            budget = over.get("packing_max_tokens", cfg.sft.packing_max_tokens)
            validate_packing(bool(packing), budget, attn, "rft.sft")
    except ConfigError as e:
        if str(cfg.model.attn_implementation) != "auto":
            raise
        raise ConfigError(f"{e} (model.attn_implementation=auto resolves to {attn} on this machine)") from None


def _check_teacher_has_its_data(cfg: DictConfig) -> None:
    """A teacher that writes for one data set only (``Teacher.data_name``: the synthetic teacher, from the
    synthetic world's scene descriptions) on any other: a distill stage that runs (not replaced by
    ``distill.trajectories_path`` or skipped for ``sft.model_path``) would fail at its first sample, after the
    data stage."""
    from hydra.utils import get_class

    from egt.stages.distill import unused

    teacher = cfg.distill.teacher
    target = teacher.get("_target_") if isinstance(teacher, DictConfig) else None
    if not target or "distill" not in stages_to_run(cfg) or cfg.distill.trajectories_path or unused(cfg):
        return
    try:
        needs = getattr(get_class(str(target)), "data_name", None)
    except Exception as exc:  # noqa: BLE001 - a wrong _target_ fails with its own message at instantiate
        raise ConfigError(f"distill.teacher._target_={target} cannot be imported: {exc}") from exc
    if needs is None or needs == cfg.data.name:
        return
    raise ConfigError(
        f"the distill teacher {target} writes only for data={needs}, not data={cfg.data.name}: give a real teacher "
        "(distill/teacher=openai with distill.teacher.base_url=… distill.teacher.model=…, or distill/teacher=hf "
        "distill.teacher.model_path=…), trajectories you have (distill.trajectories_path=…), or the SFT judge to "
        "start from (sft.model_path=…)"
    )


def _auto_attn() -> str:
    """What ``model.attn_implementation=auto`` resolves to on this machine, as
    :func:`egt.models.resolve.resolve_attn` decides it (without its log line): flash_attention_2 with CUDA and
    flash-attn 2, else sdpa."""
    import torch

    from egt.models.attention import flash_attn_2_version

    return "flash_attention_2" if torch.cuda.is_available() and flash_attn_2_version() is not None else "sdpa"


def _resolved_attn(cfg: DictConfig) -> str:
    """The attention implementation ``model.attn_implementation`` loads as on this machine
    (:func:`egt.models.resolve.resolve_attn`, without its log lines): ``auto`` → flash_attention_2 or sdpa,
    ``egt_varlen`` → itself where a varlen kernel runs for ``model.dtype``, else sdpa."""
    attn = str(cfg.model.attn_implementation)
    if attn == "auto":
        return _auto_attn()
    if attn == "egt_varlen":
        from egt.models.attention import varlen_backend

        return attn if varlen_backend(None, str(cfg.model.dtype))[0] is not None else "sdpa"
    return attn


def _validate_trainer(cfg: DictConfig) -> None:
    t = cfg.trainer
    devices = t.devices
    if not (devices == "auto" or (isinstance(devices, int) and (devices >= 1 or devices == -1))):
        raise ConfigError(f"trainer.devices={devices}: write a number of devices per node (e.g. 8) or auto")
    if t.num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes={t.num_nodes} must be >= 1")
    if cfg.distributed.timeout_minutes <= 0:
        raise ConfigError("distributed.timeout_minutes must be > 0")
    strategy = t.strategy
    target = str(strategy.get("_target_", "")) if OmegaConf.is_dict(strategy) else str(strategy)
    from egt import distributed  # late: it imports torch

    distributed.check_launch(cfg, distributed.detect())  # devices > 1 without a launcher: the torchrun command
    if not _trains(cfg):
        return
    if OmegaConf.is_dict(strategy):
        _check_strategy_class(target, str(t.accelerator))
    elif "deepspeed" in target.lower() and _on_cpu(str(t.accelerator)):  # Lightning's registry name
        raise ConfigError(_DEEPSPEED_ON_CPU.format(accelerator=t.accelerator))


def _trains(cfg: DictConfig) -> bool:
    """Does this run name a training stage that trains (sft without ``sft.model_path``, rft, rl)? Stages
    only upstream of the named ones are not counted: a probe or eval of models trained under DeepSpeed
    names ``trainer=deepspeed_*`` to find their artifacts (the trainer is in the SFT and RL keys) and may
    run where DeepSpeed cannot (its inference runs outside the trainer)."""
    named = {str(s) for s in cfg.stages}
    return bool({"rft", "rl"} & named) or ("sft" in named and not cfg.sft.model_path)


_DEEPSPEED_ON_CPU = (
    "DeepSpeed runs on CUDA GPUs only (Lightning refuses the CPU accelerator, trainer.accelerator={accelerator}): "
    "use trainer=deepspeed_zero2|deepspeed_zero3 on GPUs, trainer=ddp on CPU"
)


def _on_cpu(accelerator: str) -> bool:
    """Does Lightning's ``accelerator`` resolve to the CPU here (``cpu``, or ``auto`` with no CUDA device)?"""
    import torch

    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def _check_strategy_class(target: str, accelerator: str) -> None:
    """A ``trainer.strategy._target_`` that a training stage would fail to build, refused before any stage
    runs: a class that does not import, a DeepSpeed strategy without DeepSpeed installed, or one that keeps
    Lightning's CUDA-only check (``DeepSpeedStrategy.setup_environment``) on a CPU accelerator (``cpu``, or
    ``auto`` where no CUDA device is)."""
    import importlib
    import importlib.util

    module, _, name = target.rpartition(".")
    try:  # as hydra's instantiate locates it (without its ERROR log line)
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"trainer.strategy._target_={target} cannot be imported: {exc}") from exc
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if not (isinstance(cls, type) and issubclass(cls, DeepSpeedStrategy)):
        return
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"trainer.strategy._target_={target} needs DeepSpeed, which is not installed: pip install 'egt[gpu]'"
        )
    if _on_cpu(accelerator) and cls.setup_environment is DeepSpeedStrategy.setup_environment:
        raise ConfigError(_DEEPSPEED_ON_CPU.format(accelerator=accelerator))


def _validate_probe_select(cfg: DictConfig) -> None:
    p = cfg.probe
    if p.n < 1 or p.batch_size < 1 or p.chunk_size < 1 or p.shard_size < 1 or p.max_new_tokens < 1:
        raise ConfigError(
            "probe.n, probe.batch_size, probe.chunk_size, probe.shard_size and probe.max_new_tokens must be >= 1"
        )
    if p.n > 1 and p.temperature <= 0:
        raise ConfigError(
            f"probe.n={p.n} greedy outputs would all be the same: set probe.temperature>0 "
            "(e.g. probe.temperature=1.0) or probe.n=1"
        )
    sel = cfg.selection
    if sel.k is not None and sel.k < 1:
        raise ConfigError(f"selection.k={sel.k} must be >= 1 (or null to use selection.fraction)")
    if sel.fraction is not None and not 0.0 < sel.fraction <= 1.0:
        raise ConfigError(f"selection.fraction={sel.fraction} must be in (0, 1], e.g. 0.15")
    if sel.percentile is not None and not 0.0 < sel.percentile <= 100.0:
        raise ConfigError(f"selection.percentile={sel.percentile} must be in (0, 100], e.g. 15 (keep e < q_15)")
    if (
        sel.method is not None
        and _ranks_every_sample(sel.method)
        and sel.k is None
        and sel.fraction is None
        and sel.percentile is None
    ):
        raise ConfigError(
            "selection needs a size: write selection.k=2500, selection.fraction=0.15 or "
            "selection.percentile=15 (or selection=all)"
        )


def _validate_rft(cfg: DictConfig) -> None:
    """The rft stage (egt.stages.rft) when it is in ``stages``: the probe keeps every draw's text, the keep
    rule's cap is consistent, and ``rft.sft`` names only sft settings."""
    if "rft" not in [str(s) for s in cfg.stages]:
        if cfg.rft.get("reprobe"):
            raise ConfigError(
                "rft.reprobe=true probes the pool again with the rft judge, and the rft stage is not in stages: "
                "add rft (stages=[data,distill,sft,probe,rft,select,rl,eval]) or write rft.reprobe=false"
            )
        return
    r = cfg.rft
    if not cfg.probe.keep_texts and not cfg.probe.table_path:
        raise ConfigError(
            "the rft stage fine-tunes on the probe's correct draws, which the probe keeps only when asked: "
            "write probe.keep_texts=true (and several sampled draws, e.g. probe.n=8 probe.temperature=1.0)"
        )
    if r.per_sample is not None and r.per_sample < 1:
        raise ConfigError(f"rft.per_sample={r.per_sample} must be >= 1, or null (no cap)")
    if str(r.keep) == "first" and r.per_sample not in (None, 1):
        raise ConfigError(
            f"rft.per_sample={r.per_sample} caps rft.keep=all (rft.keep=first keeps one draw per sample): "
            f"write rft.keep=all rft.per_sample={r.per_sample}, or rft.per_sample=null"
        )
    fields = {f.name for f in dataclasses.fields(SFTConfig)} - {"model_path"}
    for k in (r.sft or {}).keys():
        if str(k) not in fields:
            raise ConfigError(f"rft.sft.{k}: {_did_you_mean(str(k), sorted(fields))} (rft.sft overrides sft settings)")


def _validate_selection_probe(cfg: DictConfig) -> None:
    """The selection method's needs of the probe (``Selection.check_probe``: e.g. selection=pass_rate needs
    several sampled outputs per sample; ``Selection.probe_settings``: e.g. selection=bis reads the columns
    of probe.answer_probs=true). An outside table (probe.table_path) is not checked here."""
    method = cfg.selection.get("method")
    if method is None or cfg.probe.table_path or "_target_" not in method:
        return
    from hydra.errors import InstantiationException

    from egt.components import build
    from egt.select.methods import Selection

    try:
        built = build(method, Selection, "selection.method")
        fix = built.check_probe(int(cfg.probe.n), float(cfg.probe.temperature))
    except (ImportError, TypeError, ValueError, InstantiationException) as exc:  # a bad argument, cleanlab missing
        raise ConfigError(f"selection.method: {exc}") from exc
    wrong = {k: v for k, v in (built.probe_settings or {}).items() if cfg.probe.get(k) != v}
    need = " ".join(f"probe.{k}={str(v).lower()}" for k, v in wrong.items())
    columns = (
        f"selection={cfg.selection.name} reads probe columns that need {need}: "
        f"write selection={cfg.selection.name} {need}"
    )
    if fix or wrong:
        raise ConfigError("; and ".join(m for m in (fix, columns if wrong else None) if m))


def _validate_entropy_probe(cfg: DictConfig) -> None:
    """The entropy score's ``probe_settings`` (egt.select.scores): e.g. entropy=answer_debiased reads the
    swapped-order columns that only probe.both_orders=true writes. An outside table (probe.table_path) is
    checked by the score itself when it reads it."""
    target = (cfg.get("entropy") or {}).get("score", {}) or {}
    target = target.get("_target_") if isinstance(target, DictConfig) else None
    if not target or cfg.probe.table_path:
        return
    from hydra.utils import get_class

    try:
        needs = getattr(get_class(target), "probe_settings", {})
    except Exception as exc:  # noqa: BLE001 - a wrong _target_ fails with its own message at instantiate
        raise ConfigError(f"entropy.score._target_={target} cannot be imported: {exc}") from exc
    wrong = {k: v for k, v in needs.items() if cfg.probe.get(k) != v}
    if wrong:
        fix = " ".join(f"probe.{k}={str(v).lower()}" for k, v in wrong.items())
        raise ConfigError(
            f"entropy={cfg.entropy.name} reads probe columns that need {fix}: write entropy={cfg.entropy.name} {fix}"
        )


def _validate_online(cfg: DictConfig) -> None:
    """curriculum.reprobe_every / selection.online (egt.select.online)."""
    every, sel = cfg.curriculum.get("reprobe_every", 0), cfg.selection
    if every < 0:
        raise ConfigError(f"curriculum.reprobe_every={every} must be >= 0 (0 = the static curriculum)")
    if sel.get("max_change") is not None and sel.max_change < 0:
        raise ConfigError(f"selection.max_change={sel.max_change} must be >= 0 or null (no cap)")
    if every == 0:
        if sel.get("online"):
            raise ConfigError(
                "selection.online=true re-selects at every re-probe: set curriculum.reprobe_every>=1 "
                "(e.g. curriculum=ascending_online)"
            )
        return
    if cfg.curriculum.name not in ("ascending", "descending", "ascending_online", "descending_online"):
        raise ConfigError(
            f"curriculum.reprobe_every={every} re-sorts by the new entropies: it needs an ordered "
            f"curriculum (curriculum=ascending_online or descending), not {cfg.curriculum.name}"
        )
    if sel.get("online") and (sel.name == "all" or cfg.rl.selection_path is not None):
        raise ConfigError(
            "selection.online=true re-selects from the probed pool: it needs a sized selection "
            "(selection=entropy, not all) made by the select stage (rl.selection_path unset)"
        )


def _is_two_stage(cfg: DictConfig) -> bool:
    target = (cfg.curriculum.get("order") or {}).get("_target_")
    if not target:
        return False
    from hydra.utils import get_class

    from egt.select.two_stage import TwoStage

    try:
        return issubclass(get_class(str(target)), TwoStage)
    except Exception:  # noqa: BLE001 - building it reports a bad _target_ with its own message
        return False


def _validate_two_stage(cfg: DictConfig) -> None:
    """curriculum=two_stage (egt.select.two_stage) and data.hints: the split needs pass rates, stage 2 needs
    epochs, and a hint is only ever added by that curriculum."""
    hints = cfg.data.get("hints")
    two_stage = _is_two_stage(cfg)
    if hints is not None and (not isinstance(hints, str) or not hints.strip()):
        raise ConfigError(f"data.hints={hints!r}: write the hint's text, e.g. data.hints='Hint: …', or null for none")
    if hints is not None and not two_stage:
        raise ConfigError(
            f"data.hints is added to the hard samples of curriculum=two_stage's second stage only; with "
            f"curriculum={cfg.curriculum.name} it would change nothing: write curriculum=two_stage or data.hints=null"
        )
    if not two_stage:
        return
    from hydra.utils import get_class

    from egt.components import build
    from egt.select.curriculum import Curriculum
    from egt.select.scores import Difficulty

    try:
        order = build(cfg.curriculum.order, Curriculum, "curriculum.order")
    except Exception as exc:  # noqa: BLE001 - Hydra wraps the class's own message: pass it on
        raise ConfigError(f"curriculum.order: {exc.__cause__ or exc}") from exc
    score = (cfg.entropy.get("score") or {}).get("_target_")
    sampled = cfg.probe.table_path or (cfg.probe.n >= 2 and cfg.probe.temperature > 0)
    if not (score and issubclass(get_class(str(score)), Difficulty) and sampled):
        raise ConfigError(
            f"curriculum=two_stage splits the kept samples by their pass rate over sampled probe outputs "
            f"(entropy=difficulty; now entropy={cfg.entropy.name}, probe.n={cfg.probe.n}): write "
            "selection=pass_rate probe.n=8 probe.temperature=1.0"
        )
    e1 = order.stage1_epochs
    if getattr(order, "stage1_share", None) is not None and cfg.rl.max_steps <= 0:
        raise ConfigError(
            f"curriculum.order.stage1_share={order.stage1_share} makes stage 1 that share of the RL budget in "
            "updates: set rl.max_steps (e.g. rl.max_steps=38), or write curriculum.order.stage1_share=null"
        )
    if cfg.rl.epochs <= e1:
        raise ConfigError(
            f"curriculum=two_stage trains curriculum.order.stage1_epochs={e1} epoch(s) on the moderate samples, "
            f"then the rest of rl.epochs on all of them; rl.epochs={cfg.rl.epochs} leaves no second stage: "
            f"write rl.epochs={e1 + 1} (or more)"
        )


def _validate_sources(cfg: DictConfig) -> None:
    """Every outside data source names a path (data=r1_reward_rl takes it from data.path) and a format egt
    can build (egt.data.formats); data.mix names
    known sources with sane weights (egt.data.mixture.check); data.num_proc >= 1."""
    from egt.data.mixture import check

    if cfg.data.get("num_proc", 1) < 1:
        raise ConfigError(f"data.num_proc={cfg.data.num_proc}: the processes reading each source, 1 or more")
    sources = cfg.data.get("sources") or {}
    for split in sources:
        for i, spec in enumerate(sources[split] or []):
            path = spec.get("path") if not OmegaConf.is_missing(spec, "path") else None
            if path in (None, "", "None"):
                if cfg.data.name == "r1_reward_rl":
                    raise ConfigError(
                        "data=r1_reward_rl needs data.path=/path/to/R1-Reward-RL (the release's folder "
                        "or a file; nothing is downloaded at run time), and data.image_root=… if its "
                        "images are files"
                    )
                raise ConfigError(
                    f"data.sources.{split}[{i}] has no path: give each source "
                    "{path: <file, folder, save_to_disk folder or Hub id>, …}"
                )
            from egt.data.sources import data_format

            data_format(to_container(spec), f"{split}[{i}]")  # an unknown format fails here, not in the data stage
    check(to_container(cfg.data.mix) if cfg.data.get("mix") else {}, to_container(sources) if sources else {})


def _validate_rl(cfg: DictConfig) -> None:
    r = cfg.rl
    if min(r.group_size, r.batch_size, r.num_mini_batches, r.ppo_epochs, r.epochs, r.max_new_tokens) < 1:
        raise ConfigError(
            "rl.group_size, rl.batch_size, rl.num_mini_batches, rl.ppo_epochs, rl.epochs and "
            "rl.max_new_tokens must be >= 1"
        )
    if r.logprob_chunk_size < 1 or (r.logprob_batch_size is not None and r.logprob_batch_size < 1):
        raise ConfigError(
            f"rl.logprob_chunk_size={r.logprob_chunk_size} must be >= 1 and rl.logprob_batch_size="
            f"{r.logprob_batch_size} >= 1 or null (null: the whole rollout batch in one forward)"
        )
    try:
        mode = shared_prompt_mode(r.shared_prompt_pass)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if r.packing_max_tokens is not None and r.packing_max_tokens < 1:
        raise ConfigError(
            f"rl.packing_max_tokens={r.packing_max_tokens} must be >= 1, or null (one group or sequence per row)"
        )
    if r.packing and mode == "cache":
        raise ConfigError(
            f"rl.packing=true packs one row per group or per sequence, not the KV-cache prompt pass "
            f"(rl.shared_prompt_pass={r.shared_prompt_pass}): write rl.shared_prompt_pass=packed (a group per "
            "unit) or rl.shared_prompt_pass=false (a sequence per unit)"
        )
    if r.packing and (attn := _resolved_attn(cfg)) not in ("sdpa", "eager", "egt_varlen"):  # rollout.PACKED_ATTENTION
        raise ConfigError(
            f"rl.packing=true blocks attention per unit, with a 4D mask (which only sdpa and eager take as given) or "
            f"egt_varlen's prefix-grouped sequences: model.attn_implementation={cfg.model.attn_implementation} runs "
            f"{attn} here, where the passes would run unpacked rows; write model.attn_implementation=egt_varlen "
            "(on GPUs; sdpa where no varlen kernel runs) or sdpa, or rl.packing=false"
        )
    if r.lr <= 0 or r.kl_coef < 0 or not 0.0 <= r.warmup_ratio < 1.0:
        raise ConfigError("rl.lr must be > 0, rl.kl_coef >= 0 and rl.warmup_ratio in [0, 1)")
    if r.kl_clamp is not None and r.kl_clamp <= 0:
        raise ConfigError(f"rl.kl_clamp={r.kl_clamp} must be > 0 (verl and OpenRLHF clamp at 10) or null (no clamp)")
    if r.temperature <= 0:
        raise ConfigError(
            f"rl.temperature={r.temperature}: RL samples its rollouts, use a temperature > 0 (e.g. rl.temperature=1.0)"
        )
    if r.advantage is not None and str(r.advantage.get("_target_", "")).endswith("GroupAdvantage") and r.group_size < 2:
        raise ConfigError(
            "rl/advantage=group with rl.group_size=1 gives every advantage 0: set rl.group_size>=2 "
            "or use rl/advantage=batch_whiten"
        )
    if cfg.reward.alpha < 0 or cfg.reward.beta < 0:
        raise ConfigError("reward.alpha and reward.beta must be >= 0 (the paper uses 0.5 and 0.5)")
    _validate_rl_filter(cfg)


def _validate_rl_filter(cfg: DictConfig) -> None:
    """``rl.filter`` built now, so its own checks (``rl.filter.refill``, ``rl.filter.max_tries``) fail before
    the first stage runs; a group filter needs G >= 2, and refill one process (egt.rl.refill)."""
    from egt import distributed  # late: they import torch
    from egt.components import build
    from egt.rl.filters import AdvantageFilter, GroupFilter

    adv_filter = build(cfg.rl.filter, AdvantageFilter, "rl.filter")
    if not isinstance(adv_filter, GroupFilter):
        return
    if "rl" not in stages_to_run(cfg):
        return
    adv_filter.check(cfg.rl.group_size)  # G = 1: every group has zero variance, all dropped (refill or not)
    world = distributed.detect().world_size
    if adv_filter.refill and world > 1:
        raise ConfigError(
            f"rl.filter.refill=true runs on one process only for now ({world} started): write "
            "rl.filter.refill=false (the rollout batch shrinks instead) or run RL on one device"
        )


def _validate_eval(cfg: DictConfig) -> None:
    e = cfg.eval
    for name in ("min_consistency", "max_gap"):
        if not 0.0 <= e.position_bias[name] <= 1.0:
            raise ConfigError(
                f"eval.position_bias.{name}={e.position_bias[name]} must be a fraction in [0, 1] "
                f"(default {getattr(PositionBiasLimits, name)})"
            )
    if e.votes < 1 or e.batch_size < 1 or e.max_new_tokens < 1:
        raise ConfigError("eval.votes, eval.batch_size and eval.max_new_tokens must be >= 1")
    if e.temperature < 0:
        raise ConfigError(f"eval.temperature={e.temperature} must be >= 0 (0 = greedy)")
    if e.votes > 1 and e.temperature <= 0:
        raise ConfigError(
            f"eval.votes={e.votes} greedy judgements would all be the same: set "
            "eval.temperature>0 (e.g. eval.temperature=1.0) or eval.votes=1"
        )
    from egt.benchmarks import names

    for spec in list(e.benchmarks) + list(e.optional_benchmarks):
        name = spec if isinstance(spec, str) else spec.get("name")
        if name is not None and name not in names() and "_target_" not in spec:
            raise ConfigError(f"eval.benchmarks: {_did_you_mean(str(name), names())}")


GIB = 1024**3


def gather_memory_bytes(
    n_params: int,
    param_bytes: int,
    world_size: int,
    offload_optimizer: bool = False,
    offload_parameters: bool = False,
) -> dict[str, int]:
    """A lower bound of one rank's GPU memory while RL generates with ZeRO-3's parameters gathered
    (``rl.gather_for_generation``), in bytes:

    - ``gathered``: the whole model, ``n_params × param_bytes`` (the parameters' dtype: 2 for bf16);
    - ``partition``: what ZeRO-3 keeps per rank, ``n_params / W ×`` (``param_bytes`` for the parameter
      shard unless offloaded + ``param_bytes`` for its gradient + 12 for the fp32 master copy and
      Adam's two moments unless the optimizer is offloaded) — DeepSpeed's ZeRO-3 model-state formula
      (Rajbhandari et al. 2020, §5: (2 + 2 + K)·Ψ/N_d with K = 12 for mixed-precision Adam);
    - ``total``: their sum. Not counted: the KV cache, activations, CUDA context and allocator slack,
      so a total above the device's memory cannot fit; one below may still not.

    >>> b = gather_memory_bytes(8_290_000_000, 2, 8)  # Qwen2.5-VL-7B, bf16, 8 ranks
    >>> round(b["gathered"] / GIB, 1), round(b["partition"] / GIB, 1)
    (15.4, 15.4)
    """
    per_param = (0 if offload_parameters else param_bytes) + param_bytes + (0 if offload_optimizer else 12)
    gathered = n_params * param_bytes
    partition = n_params * per_param // max(1, world_size)
    return {"gathered": gathered, "partition": partition, "total": gathered + partition}


def check_gather_fits(
    n_params: int,
    param_bytes: int,
    world_size: int,
    device_bytes: int,
    offload_optimizer: bool = False,
    offload_parameters: bool = False,
) -> dict[str, int]:
    """Raise a ConfigError when RL's gathered generation (``rl.gather_for_generation=true`` under ZeRO-3)
    cannot fit one rank's ``device_bytes`` of GPU memory by :func:`gather_memory_bytes`'s lower bound;
    the error names the two ways out. Returns the estimate. egt's config states no device memory, so the
    RL stage calls this at fit start on CUDA with ``torch.cuda.get_device_properties(...).total_memory``."""
    need = gather_memory_bytes(n_params, param_bytes, world_size, offload_optimizer, offload_parameters)
    if need["total"] > device_bytes:
        raise ConfigError(
            f"rl.gather_for_generation=true gathers the whole policy on every rank while it generates: "
            f"{need['gathered'] / GIB:.1f} GiB of parameters ({n_params / 1e9:.2f} B × {param_bytes} bytes) on top of "
            f"the {need['partition'] / GIB:.1f} GiB ZeRO-3 keeps per rank over {world_size} ranks is "
            f"{need['total'] / GIB:.1f} GiB (KV cache and activations not counted), more than this GPU's "
            f"{device_bytes / GIB:.1f} GiB. Write trainer=deepspeed_zero2 for RL (parameters whole on every "
            "rank, no gather: 7B fits ZeRO-2 on 8 × 80 GB, docs/scale.md), or rl.gather_for_generation=false "
            "(every decoded token all-gathers the layers: much slower), or more ranks / "
            "trainer=deepspeed_zero3_offload"
        )
    return need
