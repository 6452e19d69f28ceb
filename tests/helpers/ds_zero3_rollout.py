"""Run under ``torch.distributed.run`` (gloo, CPU): the tiny Qwen2.5-VL inside a real DeepSpeed ZeRO-3 engine,
egt's ``rollout`` with ``rl.gather_for_generation`` off and on, the online curriculum's re-probe
(``probe_with``, gathered as ``egt.select.reprobe`` runs it) over shards the ranks split unevenly, then two
training steps. Rank 0 prints one JSON line: the coordinator's per-module fetches (each one an all-gather of a
module's partitioned weights across the ranks) and the ``GatheredParameters`` entries of each path, the tokens
of both paths against the unpartitioned model's, a partitioned rollout whose ranks stop at different steps,
whether the re-probe's table equals the unpartitioned model's,
DeepSpeed's hook counts before and after, the losses of the steps after.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/helpers/ds_zero3_rollout.py MODEL_DIR OUT
"""

from __future__ import annotations

import datetime
import importlib
import json
import sys

from pathlib import Path

import deepspeed
import pandas as pd
import torch
from cli_runner import QUICK, REPO

from egt.data.encode import ChatEncoder
from egt.data.world import make_world
from egt.distributed import gathered_for_generation
from egt.models.loader import load_model_and_processor
from egt.probe.probe import probe_with
from egt.rl.rollout import HFGenerateBackend, rollout


def probe_config():
    """The quick experiment's probe settings with shards of 2 rows: 5 rows → 3 shards, 2 on rank 0 and 1 on
    rank 1, so the ranks run different numbers of generate calls (what a partitioned re-probe cannot do)."""
    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401  (registers egt's resolvers)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[*QUICK, "probe.shard_size=2", "probe.batch_size=2"])


def main(model_dir: str, out: str) -> None:
    # DeepSpeed's CPU accelerator compiles a shared-memory all-reduce op (deepspeed/comm/torch.py build_shm_op,
    # ~40 s of gcc once per machine); gloo does every collective without it, so the test skips the build
    # (by sys.modules: the attribute deepspeed.comm.torch is the torch package, which deepspeed.comm imports)
    importlib.import_module("deepspeed.comm.torch")
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    # every collective here takes milliseconds: a hang (ranks out of step) fails in 2 minutes, not 30
    deepspeed.init_distributed(dist_backend="gloo", timeout=datetime.timedelta(seconds=120))
    torch.set_num_threads(1)
    model, proc = load_model_and_processor(model_dir)
    enc = ChatEncoder(proc)
    rows = list(make_world({"n_sft": 4, "n_rl": 4, "n_bench": 4})["rl_pool"].select(range(2)))

    def run(policy, gather, engine=None):
        torch.manual_seed(3)  # temperature 1: the same draws on every path
        return rollout(policy, HFGenerateBackend(), enc, rows, 2, 6, 1.0, gather=gather, engine=engine)

    plain = run(model, True)
    initial = {n: t.detach().clone() for n, t in model.state_dict().items()}
    cfg, pool = probe_config(), make_world({"n_sft": 4, "n_rl": 5, "n_bench": 4})["rl_pool"]
    plain_table = probe_with(cfg, model, proc, pool, Path(out) / "plain")
    ds_config = {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
    }
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=model, optimizer=sgd, config=ds_config)
    offload = engine.optimizer.parameter_offload
    coordinator = offload.get_param_coordinator()
    fetches, entries = [0], [0]
    fetch = coordinator.fetch_sub_module

    def counted_fetch(*args, **kwargs):
        fetches[0] += 1
        return fetch(*args, **kwargs)

    coordinator.fetch_sub_module = counted_fetch
    gathered = deepspeed.zero.GatheredParameters

    class CountedGathered(gathered):
        def __init__(self, *args, **kwargs):
            entries[0] += 1
            super().__init__(*args, **kwargs)

    deepspeed.zero.GatheredParameters = CountedGathered
    hooks = len(offload.forward_hooks), len(offload.backward_hooks)
    result = {"world_size": torch.distributed.get_world_size(), "hooks_before": hooks}
    for gather in (False, True):
        fetches[0] = entries[0] = 0
        ro = run(engine.module, gather, engine)
        result[f"gather_{gather}"] = {
            "path": ro.generation.name,
            "fetches": fetches[0],
            "gathered_entries": entries[0],
            "same_tokens": torch.equal(ro.completion_ids, plain.completion_ids) and ro.texts == plain.texts,
            "steps": int(ro.completion_ids.shape[1]),
        }
    # partitioned, with the ranks' completions stopping at different steps (rank 0 after 2 tokens, rank 1
    # after 6, as EOS does): every rank must join every forward's all-gathers (generate's synced_gpus)
    rank0 = torch.distributed.get_rank() == 0
    torch.manual_seed(3)
    uneven = rollout(engine.module, HFGenerateBackend(), enc, rows, 2, 2 if rank0 else 6, 1.0, False, engine)
    steps = int(uneven.completion_ids.shape[1])
    result["uneven"] = {
        "path": uneven.generation.name,
        "steps": steps,
        "same_tokens": torch.equal(uneven.completion_ids, plain.completion_ids[:, :steps]),
    }
    fetches[0] = entries[0] = 0
    with gathered_for_generation(engine.module, True, engine) as path:  # as egt.select.reprobe.OnlineOrder
        table = probe_with(cfg, engine.module, proc, pool, Path(out) / "zero3")
    try:
        pd.testing.assert_frame_equal(table, plain_table)
        same = "equal"
    except AssertionError as err:
        same = str(err)[:500]
    result["reprobe"] = {"path": path.name, "fetches": fetches[0], "gathered_entries": entries[0], "table": same}
    result["reprobe"]["rows"] = len(table)
    result["hooks_after"] = len(offload.forward_hooks), len(offload.backward_hooks)
    result["partitioned_after"] = all(p.numel() == 0 for p in engine.module.parameters())
    ids = torch.tensor([[5, 6, 7, 8]])
    losses = []
    for _ in range(2):  # the hooks work for training again: forward, backward, step
        fetches[0] = 0
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    result["losses_after"], result["fetches_in_a_step"] = losses, fetches[0]
    result["saved"] = save_and_reload(engine, proc, Path(out) / "saved", initial)
    if torch.distributed.get_rank() == 0:
        print(json.dumps(result))


class DeepSpeedStrategyStub:
    """What ``egt.distributed.full_state_dict`` reads of Lightning's DeepSpeed strategy: its class name and
    ``zero_stage_3``."""

    zero_stage_3 = True


def save_and_reload(engine, proc, out: Path, initial: dict) -> dict | None:
    """The RL / SFT stages' save under ZeRO-3 (``full_state_dict``, collective, then rank 0's ``save_model``),
    reloaded with ``from_pretrained``: on rank 0, whether the keys are the unpartitioned model's
    ``state_dict`` keys and the largest difference from the engine's gathered (trained) weights, and how far
    training moved them from the initial weights."""
    from types import SimpleNamespace

    from egt.distributed import full_state_dict
    from egt.training.trained import save_model

    rank0 = torch.distributed.get_rank() == 0
    trainer = SimpleNamespace(strategy=DeepSpeedStrategyStub(), is_global_zero=rank0)
    state = full_state_dict(trainer, engine.module)  # every rank: one GatheredParameters per parameter
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
        trained = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    if not rank0:
        return None
    reloaded, _ = load_model_and_processor(save_model(out, engine.module, proc, state))
    got = reloaded.state_dict()
    return {
        "same_keys": sorted(got) == sorted(initial),
        "max_diff_trained": max(float((got[n] - t).abs().max()) for n, t in trained.items()),
        "max_moved": max(float((t - initial[n]).abs().max()) for n, t in trained.items()),
    }


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
