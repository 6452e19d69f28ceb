"""Running the whole pipeline on several processes (torchrun or SLURM), docs/design.md §8.

Every rank runs ``train.py`` with the same overrides; the launcher sets the
environment (torchrun: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE``;
``srun``: ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``). :func:`init` opens
the process group once, before any stage (gloo on CPU, nccl on GPU), plus a gloo
*coordination* group with a long timeout: ranks that wait for rank 0 (while it
builds the data set or distils) wait on that group, never on a GPU collective.

Stages are of two kinds (see :meth:`egt.artifacts.ArtifactStore.open`):

- rank-0 stages (data, distill, select, model build): rank 0 takes the artifact's
  file lock and computes; the others wait at a barrier, then read the finished
  artifact (``paths.artifacts`` must be a file system every node sees);
- all-rank stages (sft, rl: Lightning DDP / DeepSpeed on this process group;
  probe, eval: each rank its shard of samples, rank 0 merges).

Lightning's strategies reuse these processes (``TorchElasticEnvironment`` /
``SLURMEnvironment`` are detected from the same variables); nothing re-launches
``train.py``. ``trainer.devices > 1`` without a launcher is an error that gives the
exact ``torchrun`` command: Lightning's own self-launch would start the other
processes only inside ``Trainer.fit`` (half-way through the sft stage), so the
artifact store, probing and evaluation could not be rank-aware, and it re-runs
``sys.argv`` under Hydra, which breaks multiruns and output directories.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
from omegaconf import DictConfig

from egt.errors import ConfigError
from egt.utils.conf import to_container

log = logging.getLogger(__name__)
_COORD: Any = None  # the gloo group used for barriers / object broadcasts


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits, as the launcher described it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "none"  # none | torchrun | slurm

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def detect(environ: Mapping[str, str] | None = None) -> DistEnv:
    """The launcher's view of this process, from environment variables.

    >>> detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    DistEnv(rank=1, world_size=4, local_rank=1, local_world_size=2, launcher='torchrun')
    >>> detect({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_NUM_NODES": "2",
    ...         "SLURM_JOB_NAME": "egt"}).launcher
    'slurm'
    >>> detect({}).world_size
    1
    """
    env = os.environ if environ is None else environ
    if int(env.get("WORLD_SIZE", "1")) > 1:
        world = int(env["WORLD_SIZE"])
        return DistEnv(
            int(env.get("RANK", "0")),
            world,
            int(env.get("LOCAL_RANK", "0")),
            int(env.get("LOCAL_WORLD_SIZE", str(world))),
            "torchrun",
        )
    ntasks = int(env.get("SLURM_NTASKS", "1"))
    interactive = env.get("SLURM_JOB_NAME", "") in ("bash", "interactive")
    if ntasks > 1 and not interactive:
        nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
        return DistEnv(
            int(env["SLURM_PROCID"]),
            ntasks,
            int(env.get("SLURM_LOCALID", "0")),
            max(1, ntasks // max(1, nodes)),
            "slurm",
        )
    return DistEnv()


def torchrun_command(nproc: int, nnodes: int = 1, argv: list[str] | None = None) -> str:
    """The command that runs this same ``train.py`` invocation on ``nproc`` processes per node.

    >>> torchrun_command(2, 1, ["train.py", "trainer=ddp"])
    'python -m torch.distributed.run --nproc_per_node=2 train.py trainer=ddp'
    """
    argv = list(sys.argv if argv is None else argv)
    nodes = (
        f" --nnodes={nnodes} --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR --master_port=29500"
        if nnodes > 1
        else ""
    )
    return f"python -m torch.distributed.run --nproc_per_node={nproc}{nodes} " + " ".join(shlex.quote(a) for a in argv)


def check_launch(cfg: DictConfig, env: DistEnv) -> None:
    """Raise a ConfigError when the trainer asks for more processes than the launcher started."""

    devices, nodes = cfg.trainer.devices, int(cfg.trainer.num_nodes)
    if env.world_size == 1:
        if (isinstance(devices, int) and devices > 1) or nodes > 1:
            n = devices if isinstance(devices, int) and devices > 1 else 1
            raise ConfigError(
                f"trainer.devices={devices} trainer.num_nodes={nodes} needs one process per device, started by a "
                f"launcher (egt does not re-launch itself). Run:\n  {torchrun_command(n, nodes)}\n"
                "or submit with SLURM (hydra/launcher=slurm, see docs/scale.md)"
            )
        return
    if isinstance(devices, int) and devices not in (-1, env.local_world_size):
        raise ConfigError(
            f"trainer.devices={devices} but the launcher ({env.launcher}) started {env.local_world_size} processes "
            f"per node: write trainer.devices={env.local_world_size} (or trainer.devices=auto)"
        )
    if nodes not in (1, env.num_nodes):  # 1 (the default) is filled in from the launcher
        raise ConfigError(
            f"trainer.num_nodes={nodes} but the launcher started {env.num_nodes} nodes: "
            f"write trainer.num_nodes={env.num_nodes}"
        )


def backend_for(cfg: DictConfig) -> str:
    """``distributed.backend``: auto → nccl when the trainer runs on CUDA GPUs, else gloo."""
    backend = str(cfg.distributed.backend)
    if backend != "auto":
        return backend
    return "nccl" if uses_cuda(cfg) else "gloo"


def uses_cuda(cfg: DictConfig) -> bool:
    return str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def init(cfg: DictConfig, environ: Mapping[str, str] | None = None) -> DistEnv:
    """Open the process group for a multi-process launch (no-op for one process)."""
    global _COORD
    env = detect(environ)
    check_launch(cfg, env)
    if env.world_size == 1:
        return env
    if env.launcher == "slurm":  # Lightning's SLURM environment knows the main node's address and port
        from lightning.fabric.plugins.environments import SLURMEnvironment

        slurm = SLURMEnvironment()
        os.environ.setdefault("MASTER_ADDR", slurm.main_address)
        os.environ.setdefault("MASTER_PORT", str(slurm.main_port))
        for k, v in (("RANK", env.rank), ("WORLD_SIZE", env.world_size), ("LOCAL_RANK", env.local_rank)):
            os.environ.setdefault(k, str(v))
    timeout = timedelta(minutes=float(cfg.distributed.timeout_minutes))
    if not dist.is_initialized():
        backend = backend_for(cfg)
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, timeout=timeout)
    _COORD = dist.new_group(backend="gloo", timeout=timeout) if dist.get_backend() != "gloo" else None
    if env.rank != 0:  # rank-zero logging: the others say only what goes wrong
        logging.getLogger("egt").setLevel(logging.WARNING)
    log.info(
        "distributed: %d processes (%d nodes × %d) via %s, backend %s",
        env.world_size,
        env.num_nodes,
        env.local_world_size,
        env.launcher,
        dist.get_backend(),
    )
    return env


# ------------------------------------------------------------------ collectives (no-ops for one process)
def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every rank, on the CPU coordination group (long timeout)."""
    if world_size() > 1:
        dist.barrier(group=_COORD)


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` as rank ``src`` has it (picklable objects)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_COORD)
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_COORD)
    return out


def device(cfg: DictConfig) -> torch.device:
    """This rank's device for inference stages (probe, eval): its own GPU, else the CPU."""
    if uses_cuda(cfg):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.trainer`` as ``L.Trainer`` keywords: devices / num_nodes from the launcher when there is
    one, and a ``strategy`` given as ``{_target_: …}`` (DeepSpeed) instantiated."""
    from hydra.utils import instantiate

    kw = to_container(cfg.trainer)
    env = detect()
    if env.world_size > 1:
        kw["devices"], kw["num_nodes"] = env.local_world_size, env.num_nodes
    elif kw["devices"] in ("auto", -1):  # one process, one device (Lightning would self-launch on all of them)
        kw["devices"] = 1
        if uses_cuda(cfg) and torch.cuda.device_count() > 1:
            log.info(
                "using 1 of %d GPUs; for all of them: %s",
                torch.cuda.device_count(),
                torchrun_command(torch.cuda.device_count()),
            )
    if isinstance(kw.get("strategy"), dict):
        kw["strategy"] = instantiate(kw["strategy"])
    return kw


def is_deepspeed(strategy: Any) -> bool:
    """Is ``strategy`` DeepSpeed: Lightning's ``DeepSpeedStrategy`` or any subclass of it, whatever its name
    (a subclass taken for another strategy would be saved from its partitioned parameters: empty tensors),
    one of Lightning's registry names (``deepspeed_stage_3``), or a class named ``DeepSpeed…`` (test doubles)."""
    if isinstance(strategy, str):
        return strategy.startswith("deepspeed")
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return isinstance(strategy, DeepSpeedStrategy) or type(strategy).__name__.startswith("DeepSpeed")


def split_batch(n: int) -> int:
    """This rank's share of a global batch of ``n``; ``n`` must divide evenly.

    >>> split_batch(8)  # one process
    8
    """
    w = world_size()
    if n % w:
        raise ValueError(f"a global batch of {n} does not split over {w} processes: use a multiple of {w}")
    return n // w


# ------------------------------------------------------------------ strategy-specific pieces (imported lazily)
def adamw(params: list[torch.nn.Parameter], lr: float, weight_decay: float, trainer: Any = None) -> Any:
    """AdamW for SFT / RL; DeepSpeed's CPU Adam when the strategy offloads the optimizer to the CPU
    (DeepSpeed requires it there)."""
    strategy = getattr(trainer, "strategy", None)
    offload = is_deepspeed(strategy) and "offload_optimizer" in (
        (getattr(strategy, "config", None) or {}).get("zero_optimization") or {}
    )
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=lr, weight_decay=weight_decay, adamw_mode=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def full_state_dict(trainer: Any, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole state dict of ``model`` on rank 0 when ZeRO-3 has partitioned its parameters
    (collective: call it on every rank), else None (``save_pretrained`` reads the model itself).

    Parameters are gathered one at a time, so the peak extra GPU memory is one tensor.
    """
    strategy = getattr(trainer, "strategy", None)
    if not (is_deepspeed(strategy) and getattr(strategy, "zero_stage_3", False)):
        return None
    import deepspeed

    main = trainer.is_global_zero
    state: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
            if main:
                state[name] = p.detach().to("cpu", copy=True)
    if main:
        state.update({name: b.detach().cpu() for name, b in persistent_buffers(model)})
    return state if main else None


def persistent_buffers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, buffer)`` for the buffers that belong in a checkpoint, as ``model.state_dict()`` keeps
    them: a buffer registered with ``persistent=False`` (e.g. Qwen2.5-VL's rotary ``inv_freq``) is left
    out, so a ZeRO-3 save has the same keys as ``save_pretrained`` without DeepSpeed (before, those
    buffers were saved and plain transformers reported them UNEXPECTED on load, seen on an H200)."""
    out = []
    for module_name, module in model.named_modules():
        skip = getattr(module, "_non_persistent_buffers_set", set())
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and name not in skip:
                out.append((f"{module_name}.{name}" if module_name else name, buf))
    return out


def param_fingerprint(model: torch.nn.Module) -> float:
    """Σ_i (i+1)·Σ p_i in float64 over the trainable parameters: equal on every rank iff (almost surely) the
    parameters are; cheap enough to check after every DDP fit."""
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(q for q in model.parameters() if q.requires_grad):
        total += (i + 1) * p.detach().double().sum().cpu()
    return float(total)


def check_in_sync(model: torch.nn.Module, what: str, sharded: bool = False) -> bool | None:
    """After data-parallel training: are the parameters identical on every rank (were gradients
    synced)? Raises if not; None for one process or sharded (ZeRO-3) parameters."""
    if world_size() == 1 or sharded:
        return None
    prints = all_gather(param_fingerprint(model))
    if len(set(prints)) != 1:
        raise RuntimeError(
            f"{what}: parameters differ across ranks after training (fingerprints {prints}): "
            "gradients were not synchronised"
        )
    log.info("%s: parameters identical on all %d ranks", what, len(prints))
    return True


# ------------------------------------------------------------------ generation under ZeRO-3
@dataclass
class GenerationPath:
    """Which path one generation ran (:func:`gathered_for_generation`): ``plain`` (the model's parameters
    are whole on every rank: one process, DDP, ZeRO-1/2, or a model loaded outside the trainer),
    ``gathered`` (ZeRO-3, gathered once for the whole generation) or ``partitioned`` (ZeRO-3, each
    forward all-gathers each layer's weights); ``gather_s``: seconds the gather took (0 otherwise)."""

    name: str = "plain"
    gather_s: float = 0.0


def is_partitioned(model: torch.nn.Module) -> bool:
    """Are ``model``'s parameters ZeRO-3-partitioned? DeepSpeed marks every parameter it partitions
    with a ``ds_id`` (as transformers and peft test it). Anything without parameters (a test double) is not."""
    params = getattr(model, "parameters", None)
    return params is not None and any(hasattr(p, "ds_id") for p in params())


def deepspeed_engine(trainer: Any) -> Any:
    """The DeepSpeed engine that wraps the LightningModule under ZeRO-3 (``trainer.strategy.model``,
    set up at fit start), else None."""
    strategy = getattr(trainer, "strategy", None)
    if not (is_deepspeed(strategy) and getattr(strategy, "zero_stage_3", False)):
        return None
    return getattr(strategy, "model", None)


def _param_offload(engine: Any) -> Any:
    """The engine's ZeRO-3 parameter offload object (it holds the per-module fetch/release hooks), or None
    before the first optimizer exists. As TRL's ``remove_hooks`` / ``add_hooks`` find it."""
    optimizer = getattr(engine, "optimizer", None)
    if optimizer is None:
        return None
    return getattr(optimizer, "parameter_offload", optimizer)


def _register_hooks(offload: Any) -> Any:
    """The offload object's method that (re)registers DeepSpeed's per-module hooks on a module tree, or None:
    ``_register_deepspeed_module`` since DeepSpeed 0.16.4 (deepspeedai/DeepSpeed #6847 renamed it),
    ``_register_hooks_recursively`` before (0.15.0 – 0.16.3), as TRL's ``add_hooks`` picks by version."""
    for name in ("_register_deepspeed_module", "_register_hooks_recursively"):
        method = getattr(offload, name, None)
        if callable(method):
            return method
    return None


def _coordinators(offload: Any) -> list:
    """The parameter coordinators whose module trace a generation would leave stale: the one
    ``param_coordinator`` (DeepSpeed ≥ 0.15.4; still so in 0.19.6) or, in 0.15.0 – 0.15.3, the
    ``param_coordinators`` dict's values (one per ``module.training`` mode)."""
    one = getattr(offload, "param_coordinator", None)
    if one is not None:
        return [one]
    return list((getattr(offload, "param_coordinators", None) or {}).values())


def _zero3_params(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """``module``'s parameters and ZeRO-3's external parameters of each sub-module (a parameter one module
    uses but another owns, registered with ``deepspeed.zero.register_external_parameter``): a superset of
    DeepSpeed's ``iter_params(module, recurse=True)``, which TRL's ``remove_hooks`` clears and which adds the
    root's external parameters only (``get_all_parameters``: ``module.ds_external_parameters()``)."""
    params = list(module.parameters())
    seen = {id(p) for p in params}
    for m in module.modules():
        external = getattr(m, "ds_external_parameters", None)
        for _, p in external() if callable(external) else ():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _remove_zero3_hooks(engine: Any) -> Any:
    """Remove DeepSpeed's per-module forward/backward hooks (each pre-forward hook all-gathers its
    module's parameters, each post-forward hook releases them); returns the offload object to restore
    them on, None when there were none to remove (no engine / no optimizer yet) or when this DeepSpeed
    could not register them again (then they stay: correct, slower; a warning says so)."""
    offload = _param_offload(engine)
    if offload is None:
        return None
    if not hasattr(offload, "forward_hooks") or _register_hooks(offload) is None:
        log.warning(
            "rl.gather_for_generation: %s has no forward_hooks or no method to register them again: "
            "DeepSpeed's per-module hooks stay on while the gathered policy generates (correct, maybe slower)",
            type(offload).__name__,
        )
        return None
    for p in _zero3_params(offload.module):
        active = getattr(p, "ds_active_sub_modules", None)
        if active is not None:
            active.clear()
    for hook in [*offload.forward_hooks, *offload.backward_hooks]:
        hook.remove()
    offload.forward_hooks, offload.backward_hooks = [], []
    return offload


def _restore_zero3_hooks(offload: Any) -> None:
    """Register DeepSpeed's hooks again, after invalidating the parameter coordinators' traces (the
    generation's forwards are not the training step's module order: a stale trace would prefetch wrongly;
    DeepSpeed ≥ 0.19.2 also invalidates it when the root is re-registered, deepspeedai/DeepSpeed #8043)."""
    for coordinator in _coordinators(offload):
        if not coordinator.is_invalid_trace():
            coordinator._invalidate_trace()
    _register_hooks(offload)(offload.module)


@contextmanager
def gathered_for_generation(
    model: torch.nn.Module, enabled: bool = True, engine: Any = None
) -> Iterator[GenerationPath]:
    """Generate with ZeRO-3's parameters gathered **once** for the whole block, not per decoded token.

    Under ZeRO-3 each rank holds 1/W of every parameter; DeepSpeed's pre-forward hook on each module
    all-gathers its weights and the post-forward hook frees them, so ``generate`` with T new tokens
    all-gathers the whole model T times (deepspeedai/DeepSpeed #4354, #5498). Here, with ``enabled`` and
    a partitioned ``model`` (:func:`is_partitioned`), all of ``model``'s parameters are gathered once
    (``deepspeed.zero.GatheredParameters(list(params))``, read-only: ``modifier_rank=None``, nothing is
    broadcast back), DeepSpeed's per-module hooks on ``engine`` are removed for the block (else each
    forward would still fetch / release per module) and restored after, and the gathered copies are
    freed on exit. The same weights either way, so the same tokens.

    Follows TRL's ``_unwrap_model_for_generation`` with ``remove_hooks`` / ``add_hooks``
    (huggingface/trl v1.16.0, trl/models/utils.py; TRL's ``ds3_gather_for_generation`` switch); egt
    differs in restoring the hooks in a ``finally`` (an exception in generation leaves the engine as
    it was) and in gathering the policy's parameters only (the LightningModule may hold other modules).

    Memory: the whole model's parameters in their dtype on every rank for the block (7B in bf16: ~15 GB),
    besides ZeRO-3's own partition and the KV cache; checked at RL's start (:func:`egt.config.validation.
    check_gather_fits`). Collective: every rank must enter the block (each rollout does). Not enabled,
    or not partitioned: no-op. Yields the :class:`GenerationPath` taken (``gather_s`` filled on entry).
    """
    if not is_partitioned(model):
        yield GenerationPath("plain")
        return
    if not enabled:
        yield GenerationPath("partitioned")
        return
    import deepspeed

    t0 = time.perf_counter()
    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        path = GenerationPath("gathered", time.perf_counter() - t0)
        offload = _remove_zero3_hooks(engine)
        try:
            yield path
        finally:
            if offload is not None:
                _restore_zero3_hooks(offload)
