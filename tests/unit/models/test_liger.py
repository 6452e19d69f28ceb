"""model.liger (egt.models.liger): the error paths on CPU, what the patch is called with (a stand-in
liger_kernel module: the real one needs Triton and CUDA), that only the instance changes, and the keys:
SFT and RL keys gain ``liger`` only when it is on."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.config import ConfigError, validate
from egt.models import liger
from egt.models.loader import load_model
from egt.stages import rl as rl_stage
from egt.stages import sft as sft_stage

CONF = Path(__file__).resolve().parents[3] / "conf"


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_not_installed_says_what_to_install_or_write(monkeypatch):
    monkeypatch.setattr(liger, "liger_version", lambda: None)
    with pytest.raises(ImportError, match=r"pip install egt\[liger\].*model.liger=false"):
        liger.check("cuda")
    with pytest.raises(ConfigError, match=r"model.liger=true needs the liger-kernel package.*model.liger=false"):
        validate(_cfg("model.liger=true"))
    validate(_cfg("model.liger=false"))


def test_installed_but_on_cpu_says_cuda(monkeypatch):
    monkeypatch.setattr(liger, "liger_version", lambda: "0.8.5")
    with pytest.raises(RuntimeError, match=r"needs a CUDA device.*on cpu.*model.liger=false"):
        liger.check("cpu")
    assert liger.check("cuda") == "0.8.5"
    assert liger.fused_linear_cross_entropy() is None or liger.torch.cuda.is_available()


def _fake_liger(monkeypatch):
    """A stand-in for liger_kernel.transformers: records the call and, like the real 0.8.5 function,
    rebinds the module-level classes of modeling_qwen2_5_vl."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as mq

    calls = []

    def apply_liger_kernel_to_qwen2_5_vl(**kw):
        calls.append(kw)
        mq.Qwen2_5_VLRMSNorm = "liger rms norm"
        mq.Qwen2MLP = "liger swiglu"

    pkg = types.ModuleType("liger_kernel")
    sub = types.ModuleType("liger_kernel.transformers")
    sub.apply_liger_kernel_to_qwen2_5_vl = apply_liger_kernel_to_qwen2_5_vl
    monkeypatch.setitem(sys.modules, "liger_kernel", pkg)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", sub)
    monkeypatch.setattr(liger, "liger_version", lambda: "0.8.5")
    return calls, mq


def test_apply_patches_the_instance_only(monkeypatch, tiny_model_dir):
    calls, mq = _fake_liger(monkeypatch)
    before = (mq.Qwen2_5_VLRMSNorm, mq.Qwen2MLP)
    model = load_model(tiny_model_dir)
    assert liger.apply(model, device="cuda") is model
    assert calls == [
        dict(rope=False, cross_entropy=False, fused_linear_cross_entropy=False, rms_norm=True, swiglu=True, model=model)
    ]
    assert (mq.Qwen2_5_VLRMSNorm, mq.Qwen2MLP) == before  # models built later are stock


def test_apply_refuses_other_models(monkeypatch):
    _fake_liger(monkeypatch)
    import torch

    with pytest.raises(TypeError, match=r"Qwen2.5-VL models only.*Linear.*model.liger=false"):
        liger.apply(torch.nn.Linear(2, 2), device="cuda")


def test_maybe_apply_is_a_no_op_when_off(tiny_model_dir):
    model = load_model(tiny_model_dir)
    assert liger.maybe_apply(model, _cfg()) is model


def test_rl_key_gains_liger_only_when_on():
    base = rl_stage.key_config(_cfg())
    assert "liger" not in base and rl_stage.key_config(_cfg("model.liger=false")) == base
    assert rl_stage.key_config(_cfg("model.liger=true")) == {**base, "liger": True}


class _Stop(Exception):
    pass


def _sft_key_conf(monkeypatch, *overrides) -> dict:
    """The config part of the SFT key, caught at make_key (sft.run builds it inline)."""
    seen = {}

    def make_key(stage, conf, **kw):
        seen.update(conf)
        raise _Stop

    class Pipe:
        def get(self, name):
            return {"key": f"{name}-key", "model_path": "/nowhere", "identity": {"name": name}}

    monkeypatch.setattr(sft_stage, "make_key", make_key)
    with pytest.raises(_Stop):
        sft_stage.run(_cfg(*overrides), Pipe())
    return seen


def test_sft_key_gains_liger_only_when_on(monkeypatch):
    base = _sft_key_conf(monkeypatch)
    assert "liger" not in base and _sft_key_conf(monkeypatch, "model.liger=false") == base
    assert _sft_key_conf(monkeypatch, "model.liger=true") == {**base, "liger": True}
