"""egt.training.recipe.fit, the sequence sft and rl share, on a one-layer module: the summary's order
(the stage's, params_in_sync, rank 0's finish), resume from last.ckpt with the seconds of every attempt,
the logger closed on success and on failure."""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

import egt.config  # noqa: F401  (registers the schema)
from egt.training import recipe

CONF = Path(__file__).resolve().parents[3] / "conf"


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Linear(2, 1)

    def training_step(self, batch, idx):  # noqa: ANN001
        (x,) = batch
        return self.model(x).pow(2).mean()

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.model.parameters(), lr=0.1)


@pytest.fixture
def cfg():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["logger=none"])


def _fit(
    cfg,
    tmp_path,
    module,
    closed,
    monkeypatch,
    finish=lambda trainer, logger, state: {"finished": trainer.is_global_zero},
):
    monkeypatch.setattr(recipe, "close_logger", lambda logger, status: closed.append(status))
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    return recipe.fit(
        cfg,
        "sft",
        module,
        tmp_path,
        loader,
        checkpoint=tmp_path / "checkpoints" / "last.ckpt",
        callbacks=[],
        progress_metric="train/loss",
        max_epochs=1,
        summarize=lambda trainer, resumed: {"steps": trainer.global_step, "resumed": resumed},
        finish=finish,
    )


def test_fit_summarizes_checks_sync_and_finishes_in_that_order(cfg, tmp_path, monkeypatch):
    closed = []
    summary = _fit(cfg, tmp_path, Tiny(), closed, monkeypatch)
    assert list(summary) == ["steps", "resumed", "train_seconds", "train_cpu_seconds", "params_in_sync", "finished"]
    assert summary["train_seconds"] >= 0  # the fit's wall seconds
    assert summary["train_cpu_seconds"] > 0  # this process's CPU seconds: the cost the methods table reports
    assert summary["steps"] == 2 and summary["resumed"] is False and summary["params_in_sync"] is not False
    assert closed == ["success"]


def _earlier_attempt(tmp_path, callbacks=()) -> L.Trainer:
    """A plain Lightning fit of one epoch that leaves ``checkpoints/last.ckpt`` for :func:`_fit` to resume."""
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
    )
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4))
    (tmp_path / "checkpoints").mkdir()
    trainer.save_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    return trainer


def test_fit_resumes_from_last_ckpt(cfg, tmp_path, monkeypatch):
    _earlier_attempt(tmp_path)
    summary = _fit(cfg, tmp_path, Tiny(), [], monkeypatch)
    assert summary["resumed"] is True and summary["steps"] == 2  # nothing left to do: the epoch was done
    assert summary["fit_seconds_complete"] is False  # a checkpoint without egt's clock: seconds from here on


def test_a_resumed_fit_reports_the_seconds_of_every_attempt(cfg, tmp_path, monkeypatch):
    """The killed attempt's seconds, saved by FitClock in its checkpoint, are added to the resumed fit's:
    the cost of the model, not of its last attempt (methods protocol §3)."""
    clock = recipe.FitClock()
    clock.carried = {"wall": 1000.0, "cpu": 500.0}  # as if an earlier attempt had run that long
    clock.start()
    first = _earlier_attempt(tmp_path, [clock])
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]["FitClock"]
    assert saved["wall"] >= 1000.0 and saved["cpu"] >= 500.0

    summary = _fit(cfg, tmp_path, Tiny(), [], monkeypatch)
    assert summary["resumed"] is True and summary["fit_seconds_complete"] is True
    # carried + this attempt's (the summary rounds to 0.01 s)
    assert saved["wall"] - 0.01 <= summary["train_seconds"] < saved["wall"] + 600
    assert saved["cpu"] - 0.01 <= summary["train_cpu_seconds"] < saved["cpu"] + 600

    # a checkpoint whose first attempt ran without the clock keeps saying so through later resumes
    clock.complete = False
    first.save_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert _fit(cfg, tmp_path, Tiny(), [], monkeypatch)["fit_seconds_complete"] is False


def test_a_failed_finish_closes_the_logger_as_failed(cfg, tmp_path, monkeypatch):
    closed = []

    def finish(trainer, logger, state):  # noqa: ANN001, ANN202
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _fit(cfg, tmp_path, Tiny(), closed, monkeypatch, finish)
    assert closed == ["failed"]
