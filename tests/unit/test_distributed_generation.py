"""egt.distributed.gathered_for_generation (rl.gather_for_generation, issue 37 item 1) against a fake ZeRO-3.

deepspeed is not installed here, so a fake stands in for what the context manager touches: parameters
marked ``ds_id`` whose data is really taken away when "partitioned" (a forward on a partitioned
parameter fails), DeepSpeed's per-module hooks (pre-forward: all-gather the module's own parameters,
counted; post-forward: partition them again) registered through an offload object shaped as
DeepSpeed's (``forward_hooks``, ``backward_hooks``, ``module``, ``_register_deepspeed_module``,
``param_coordinator``), and ``deepspeed.zero.GatheredParameters`` (counted entries) injected into
``sys.modules``. Then: one gather per generation with the switch on, one per module per decoded token
with it off, the same tokens both ways, hooks back after, no-op on a plain model; and the same through
egt's real ``rollout`` on the tiny Qwen2.5-VL.
"""

import sys
import types
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from egt.distributed import GenerationPath, gathered_for_generation, is_partitioned

AVAILABLE, NOT_AVAILABLE = "AVAILABLE", "NOT_AVAILABLE"


class FakeCoordinator:
    def __init__(self):
        self.invalid, self.invalidations = False, 0

    def is_invalid_trace(self):
        return self.invalid

    def _invalidate_trace(self):
        self.invalid, self.invalidations = True, self.invalidations + 1


class FakeZero3:
    """Partitions ``module``'s parameters (data taken away, the full tensor kept aside as the other ranks'
    shards would be) and hooks every module with parameters of its own, as DeepSpeed's ZeRO-3 does."""

    def __init__(self, module: nn.Module):
        self.module, self.gathers, self.entries = module, 0, 0
        self.forward_hooks: list = []
        self.backward_hooks: list = []
        self.param_coordinator = FakeCoordinator()
        for i, p in enumerate(module.parameters()):
            p.ds_id, p.ds_full, p.ds_active_sub_modules = i, p.data, {0}
            p.ds_numel = p.numel()
            self.partition(p)
        self._hook_all(module)
        self.engine = types.SimpleNamespace(optimizer=types.SimpleNamespace(parameter_offload=self))

    @staticmethod
    def partition(p):
        p.data, p.ds_status = torch.empty(0, dtype=p.dtype), NOT_AVAILABLE

    def fetch(self, own):
        """A module's pre-forward all-gather of its own parameters (counted once per module, as DeepSpeed
        gathers a module's parameters together), skipped when they are already whole."""
        missing = [p for p in own if p.ds_status != AVAILABLE]
        for p in missing:
            p.data, p.ds_status = p.ds_full, AVAILABLE
        self.gathers += bool(missing)

    def _hook_all(self, root: nn.Module):
        for m in root.modules():
            own = list(m.parameters(recurse=False))
            if not own:
                continue
            pre = m.register_forward_pre_hook(lambda mod, args, own=own: self.fetch(own))
            post = m.register_forward_hook(lambda mod, args, out, own=own: self.release(own))
            self.forward_hooks += [pre, post]

    _register_deepspeed_module = _hook_all

    def release(self, own):
        for p in own:
            self.partition(p)

    def hook_count(self) -> int:
        return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in self.module.modules())

    def deepspeed_module(self):
        """A fake ``deepspeed`` package whose ``zero.GatheredParameters`` counts entries."""
        fake = self

        @contextmanager
        def GatheredParameters(params, modifier_rank=None):
            fake.entries += 1
            params = list(params)
            taken = [p for p in params if p.ds_status != AVAILABLE]
            for p in taken:
                p.data, p.ds_status = p.ds_full, AVAILABLE
            try:
                yield
            finally:
                for p in taken:
                    fake.partition(p)

        ds = types.ModuleType("deepspeed")
        ds.zero = types.ModuleType("deepspeed.zero")
        ds.zero.GatheredParameters = GatheredParameters
        return ds


class TinyLM(nn.Module):
    """Embedding → MLP → head; greedy decoding without a cache, one forward per new token."""

    def __init__(self, vocab=17, dim=8):
        super().__init__()
        self.embed, self.mlp, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, dim), nn.Linear(dim, vocab)

    def forward(self, ids):  # [B, T] → logits [B, T, V]
        return self.head(torch.tanh(self.mlp(self.embed(ids))))

    @torch.no_grad()
    def generate(self, ids, new_tokens):  # [B, T] → [B, new_tokens]
        for _ in range(new_tokens):
            ids = torch.cat([ids, self(ids)[:, -1].argmax(-1, keepdim=True)], 1)
        return ids[:, -new_tokens:]


def _partitioned(monkeypatch, model):
    fake = FakeZero3(model)
    ds = fake.deepspeed_module()
    monkeypatch.setitem(sys.modules, "deepspeed", ds)
    monkeypatch.setitem(sys.modules, "deepspeed.zero", ds.zero)
    return fake


PROMPT = torch.tensor([[1, 2, 3], [4, 5, 6]])


def test_one_gather_per_generation_on_and_one_per_module_per_token_off(monkeypatch):
    torch.manual_seed(0)
    plain_model = TinyLM()
    expected = plain_model.generate(PROMPT, 5)  # [2, 5] the unpartitioned model's tokens
    fake = _partitioned(monkeypatch, plain_model)
    assert is_partitioned(plain_model) and plain_model.head.weight.numel() == 0  # really taken away
    hooks = fake.hook_count()

    with gathered_for_generation(plain_model, enabled=False, engine=fake.engine) as path:
        off = plain_model.generate(PROMPT, 5)
    assert path == GenerationPath("partitioned") and fake.entries == 0
    assert fake.gathers == 5 * 3  # each of the 3 modules with parameters all-gathers on each of the 5 tokens

    fake.gathers = 0
    with gathered_for_generation(plain_model, enabled=True, engine=fake.engine) as path:
        assert fake.hook_count() == 0  # the per-module hooks are lifted inside the block
        on = plain_model.generate(PROMPT, 5)
    assert path.name == "gathered" and path.gather_s >= 0
    assert fake.entries == 1 and fake.gathers == 0  # one gather for the whole generation, none per token

    torch.testing.assert_close(off, expected, rtol=0, atol=0)
    torch.testing.assert_close(on, expected, rtol=0, atol=0)
    # after the block: the parameters are partitioned again, the hooks back, the coordinator's trace reset
    assert plain_model.head.weight.numel() == 0 and fake.hook_count() == hooks
    assert fake.param_coordinator.invalidations == 1
    assert all(not p.ds_active_sub_modules for p in plain_model.parameters())  # cleared as TRL's remove_hooks
    plain_model.generate(PROMPT, 1)
    assert fake.gathers == 3  # a forward after the block gathers per module again (the hooks work)


def test_hooks_are_restored_when_generation_raises(monkeypatch):
    model = TinyLM()
    fake = _partitioned(monkeypatch, model)
    hooks = fake.hook_count()
    with pytest.raises(RuntimeError, match="boom"):
        with gathered_for_generation(model, True, fake.engine):
            raise RuntimeError("boom")
    assert fake.hook_count() == hooks and model.head.weight.numel() == 0


def test_no_engine_yet_gathers_without_touching_hooks(monkeypatch):
    """Before the optimizer exists (TRL's remove_hooks returns early there too) the gather still happens."""
    model = TinyLM()
    fake = _partitioned(monkeypatch, model)
    hooks = fake.hook_count()
    with gathered_for_generation(model, True, engine=types.SimpleNamespace(optimizer=None)) as path:
        assert fake.hook_count() == hooks
        model.generate(PROMPT, 2)
    assert path.name == "gathered" and fake.entries == 1


def test_a_plain_model_is_left_alone(monkeypatch):
    model = TinyLM()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # importing deepspeed would fail: it must not be tried
    for enabled in (True, False):
        with gathered_for_generation(model, enabled, engine=None) as path:
            model.generate(PROMPT, 2)
        assert path == GenerationPath("plain")
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_egt_rollout_on_the_tiny_model_gathers_once_per_batch(monkeypatch, tiny_model_dir, world_small):
    from egt.data.encode import ChatEncoder
    from egt.models.loader import load_model_and_processor
    from egt.rl.rollout import HFGenerateBackend, rollout

    model, proc = load_model_and_processor(tiny_model_dir)
    enc, rows = ChatEncoder(proc), list(world_small["rl_pool"].select(range(2)))

    def run(gather, engine=None):
        torch.manual_seed(3)
        return rollout(model, HFGenerateBackend(), enc, rows, 2, 6, 1.0, gather=gather, engine=engine)

    plain = run(True)
    assert plain.generation == GenerationPath("plain")
    fake = _partitioned(monkeypatch, model)
    hooks = fake.hook_count()
    off = run(False, fake.engine)
    per_token = fake.gathers
    fake.gathers = 0
    on = run(True, fake.engine)
    assert off.generation.name == "partitioned" and on.generation.name == "gathered"
    n_steps = off.completion_ids.shape[1]  # one forward per generated position
    text_modules = sum(1 for m in model.model.language_model.modules() if list(m.parameters(recurse=False)))
    assert per_token >= n_steps * text_modules  # off: every language-model module gathered on every forward
    assert fake.entries == 1 and fake.gathers == 0  # on: one gather for the batch's whole generation
    for ro in (off, on):
        assert torch.equal(ro.completion_ids, plain.completion_ids) and ro.texts == plain.texts
    assert fake.hook_count() == hooks and all(p.numel() == 0 for p in model.parameters())


def test_memory_check_names_both_ways_out():
    from egt.config import ConfigError
    from egt.config.validation import GIB, check_gather_fits, gather_memory_bytes

    # Qwen2.5-VL-7B in bf16 on 8 × 80 GB: 15.4 GiB gathered + 15.4 GiB partition fits
    fits = check_gather_fits(8_290_000_000, 2, 8, 80 * 10**9)
    assert fits["gathered"] == 8_290_000_000 * 2 and fits["partition"] == 8_290_000_000 * 16 // 8
    # a 32B model on 8 × 80 GB: 64 GB gathered + 64 GB partition does not
    with pytest.raises(ConfigError) as err:
        check_gather_fits(32_000_000_000, 2, 8, 80 * 10**9)
    msg = str(err.value)
    assert "rl.gather_for_generation=false" in msg and "trainer=deepspeed_zero2" in msg
    assert "59.6 GiB of parameters" in msg and "119.2 GiB" in msg and "74.5 GiB" in msg
    # offloading the optimizer and parameters leaves only the gradient shard: 2 bytes / 8 ranks per parameter
    off = gather_memory_bytes(32_000_000_000, 2, 8, offload_optimizer=True, offload_parameters=True)
    assert off["partition"] == 32_000_000_000 * 2 // 8 and off["total"] / GIB == pytest.approx(67.06, abs=0.01)


class FakeZero3Old(FakeZero3):
    """DeepSpeed 0.15.0 – 0.15.3's offload object: ``_register_hooks_recursively`` (renamed
    ``_register_deepspeed_module`` in 0.16.4) and one coordinator per ``module.training`` mode in
    ``param_coordinators`` (one ``param_coordinator`` from 0.15.4); read off the v0.15.0 and v0.16.3 tags'
    deepspeed/runtime/zero/parameter_offload.py."""

    _register_hooks_recursively = FakeZero3._hook_all

    def __init__(self, module: nn.Module):
        super().__init__(module)
        del self.param_coordinator
        self.param_coordinators = {True: FakeCoordinator(), False: FakeCoordinator()}

    def __getattribute__(self, name):
        if name == "_register_deepspeed_module":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_deepspeed_before_0_16_4_restores_through_its_own_method(monkeypatch):
    model = TinyLM()
    expected = model.generate(PROMPT, 3)
    fake = FakeZero3Old(model)
    ds = fake.deepspeed_module()
    monkeypatch.setitem(sys.modules, "deepspeed", ds)
    monkeypatch.setitem(sys.modules, "deepspeed.zero", ds.zero)
    hooks = fake.hook_count()
    with gathered_for_generation(model, True, fake.engine) as path:
        assert fake.hook_count() == 0
        out = model.generate(PROMPT, 3)
    assert path.name == "gathered" and torch.equal(out, expected)
    assert fake.hook_count() == hooks  # registered again by _register_hooks_recursively
    assert [c.invalidations for c in fake.param_coordinators.values()] == [1, 1]  # both modes' traces reset
    fake.gathers = 0
    model.generate(PROMPT, 1)
    assert fake.gathers == 3


def test_hooks_stay_when_this_deepspeed_cannot_register_them_again(monkeypatch, caplog):
    """An offload object with hooks but neither registration method: lifting the hooks could not be undone,
    so they stay on (correct, per-module gathers inside the block) and a warning says so."""
    model = TinyLM()
    fake = _partitioned(monkeypatch, model)
    offload = types.SimpleNamespace(forward_hooks=fake.forward_hooks, backward_hooks=[], module=model)
    hooks = fake.hook_count()
    with caplog.at_level("WARNING", logger="egt.distributed"):
        with gathered_for_generation(model, True, types.SimpleNamespace(optimizer=offload)) as path:
            assert fake.hook_count() == hooks
            model.generate(PROMPT, 2)
    assert path.name == "gathered" and fake.hook_count() == hooks
    assert "no method to register them again" in caplog.text


def test_external_parameters_are_released_from_their_modules_too(monkeypatch):
    """A parameter registered as another module's external parameter (ZeRO-3's
    ``register_external_parameter``) has its active sub-modules cleared too, as TRL's ``iter_params``."""
    model = TinyLM()
    fake = _partitioned(monkeypatch, model)
    shared = nn.Parameter(torch.zeros(2))
    shared.ds_active_sub_modules = {5}
    model.mlp.ds_external_parameters = lambda: [("0", shared)]
    with gathered_for_generation(model, True, fake.engine):
        assert not shared.ds_active_sub_modules


def test_real_deepspeed_zero3_on_two_cpu_ranks_gathers_once(tiny_model_dir, tmp_path):
    """DeepSpeed itself (``egt[test]`` installs it beside the CPU torch), ZeRO-3 over 2 ranks on the CPU (gloo):
    egt's rollout on the tiny Qwen2.5-VL with the switch off makes the partitioned forwards fetch (all-gather)
    each module's weights on every decoded position; on, none, and one ``GatheredParameters`` for the batch.
    Same tokens as the unpartitioned model both ways. The online curriculum's re-probe, gathered, over shards
    the ranks split unevenly (2 and 1): no fetch, the unpartitioned model's table. DeepSpeed's hooks and the
    partitioning back after; two training steps run on the restored hooks; the stages' ZeRO-3 save reloads with
    ``from_pretrained`` as the trained weights."""
    pytest.importorskip("deepspeed")
    import json
    import os
    import subprocess
    from pathlib import Path

    helper = Path(__file__).resolve().parents[1] / "helpers" / "ds_zero3_rollout.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(helper.parents[2]), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(helper)]
    cmd += [str(tiny_model_dir), str(tmp_path / "reprobe")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"world_size"')]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    r = json.loads(lines[0])
    off, on = r["gather_False"], r["gather_True"]
    assert r["world_size"] == 2 and off["path"] == "partitioned" and on["path"] == "gathered"
    assert off["fetches"] >= off["steps"] * 10 and off["gathered_entries"] == 0  # per module, per forward
    assert on["fetches"] == 0 and on["gathered_entries"] == 1  # one gather for the whole generation
    assert off["same_tokens"] and on["same_tokens"]
    # partitioned, rank 0's completions stopping after 2 tokens and rank 1's after 6: no hang (rank 0 joins
    # rank 1's forwards' all-gathers until both are done), rank 0's tokens the unpartitioned model's first 2
    assert r["uneven"] == {"path": "partitioned", "steps": 2, "same_tokens": True}
    reprobe = r["reprobe"]
    assert reprobe == {"path": "gathered", "fetches": 0, "gathered_entries": 1, "table": "equal", "rows": 5}
    assert r["hooks_after"] == r["hooks_before"] and r["partitioned_after"]
    assert r["fetches_in_a_step"] > 0 and all(0 < loss < 20 for loss in r["losses_after"])
    # the ZeRO-3 save (full_state_dict + save_model) reloads as the trained weights, with save_pretrained's keys
    assert r["saved"]["same_keys"] and r["saved"]["max_diff_trained"] == 0.0 and r["saved"]["max_moved"] > 0


def test_reprobe_under_zero3_on_several_ranks_needs_the_gathered_policy():
    from egt.stages.rl import reprobe_needs_gather

    def trainer(zero3, world):
        return types.SimpleNamespace(strategy=types.SimpleNamespace(zero_stage_3=zero3), world_size=world)

    assert reprobe_needs_gather(trainer(True, 2), gather_for_generation=False)
    assert not reprobe_needs_gather(trainer(True, 2), gather_for_generation=True)
    assert not reprobe_needs_gather(trainer(True, 1), gather_for_generation=False)  # one rank: nothing to differ
    assert not reprobe_needs_gather(trainer(False, 8), gather_for_generation=False)  # ZeRO-2 / DDP: whole weights
    assert not reprobe_needs_gather(types.SimpleNamespace(strategy=None, world_size=4), False)
