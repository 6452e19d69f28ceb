"""The offline WandbLogger does not set WANDB_MODE for the whole process: a user's WANDB_MODE (a sweep
agent's online run) reaches the final report's wandb.init. No network: wandb.init is a fake."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import wandb
from omegaconf import OmegaConf

from egt import sweep
from egt.utils.logging import close_logger, make_logger


class FakeRun(SimpleNamespace):
    def __init__(self):
        super().__init__(config=SimpleNamespace(update=lambda *a, **k: None), summary={}, logged=[])

    def log(self, metrics, **kw):
        self.logged.append(metrics)

    def finish(self, *a, **k):
        pass


@pytest.fixture
def inits(monkeypatch):
    """Every wandb.init call: its kwargs and the WANDB_MODE the process had at that moment."""
    monkeypatch.setenv("WANDB_MODE", "restored-after-the-test")  # records the caller's value to put back
    calls = []

    def init(**kw):
        calls.append({"kw": kw, "env": os.environ.get("WANDB_MODE")})
        return FakeRun()

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb, "run", None, raising=False)
    return calls


def _cfg(tmp_path):
    return OmegaConf.create(
        {
            "run_name": "t",
            "paths": {"logs": str(tmp_path)},
            "logger": {
                "_target_": "lightning.pytorch.loggers.WandbLogger",
                "project": "egt",
                "offline": True,
                "save_dir": str(tmp_path),
            },
        }
    )


def _mode(call) -> str | None:
    return call["kw"].get("mode") or call["env"]


def test_offline_logger_does_not_leak_into_the_environment(tmp_path, monkeypatch, inits):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = make_logger(_cfg(tmp_path), "sft")
    assert _mode(inits[0]) in ("offline", "dryrun")  # the stage's own run is offline (no key, no network)
    assert "WANDB_MODE" not in os.environ
    close_logger(logger, "success")


def test_users_wandb_mode_reaches_the_loggers_and_the_sweep_report(tmp_path, monkeypatch, inits):
    monkeypatch.setenv("WANDB_MODE", "online")  # what conf/logger/wandb.yaml tells a user to set
    monkeypatch.setenv("WANDB_SWEEP_ID", "s1")
    cfg = _cfg(tmp_path)
    close_logger(make_logger(cfg, "sft"), "success")
    assert os.environ["WANDB_MODE"] == "online" and _mode(inits[0]) == "online"
    sweep.log_to_wandb_sweep(cfg, {"eval": {"summary": {"headline": 0.8}}}, 0.8)
    assert _mode(inits[-1]) == "online" and len(inits) == 2  # the sweep metric goes to the agent's run
