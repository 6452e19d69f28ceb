"""Training progress as log lines where stderr is not a terminal (egt.utils.progress.ProgressLog)."""

import logging
import types

from egt.utils.progress import progress_callback


def _trainer(done=0, metrics=None):
    return types.SimpleNamespace(
        is_global_zero=True,
        num_training_batches=3,
        max_epochs=2,
        max_steps=-1,
        fit_loop=types.SimpleNamespace(
            epoch_loop=types.SimpleNamespace(
                batch_progress=types.SimpleNamespace(total=types.SimpleNamespace(completed=done))
            )
        ),
        callback_metrics=metrics or {},
    )


def test_one_line_per_interval_and_at_the_end(caplog):
    cb = progress_callback("rl", logging.getLogger("t"), "rl/reward", every=3600)
    cb.tty = False
    trainer = _trainer(metrics={"rl/reward": 0.25})
    with caplog.at_level(logging.INFO, logger="t"):
        cb.on_train_start(trainer, None)
        for i in range(6):
            cb.on_train_batch_end(trainer, None, None, None, i)
        cb.on_train_end(trainer, None)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("[rl]: 6/6 batches (100%)") and lines[0].endswith("; rl/reward 0.25")


def test_resumed_run_counts_what_is_left_and_a_terminal_shows_nothing(caplog):
    cb = progress_callback("sft", logging.getLogger("t"), every=0)
    cb.tty = False
    with caplog.at_level(logging.INFO, logger="t"):
        cb.on_train_start(_trainer(done=4), None)
        cb.on_train_batch_end(_trainer(done=4), None, None, None, 0)
    assert caplog.records[-1].getMessage().startswith("[sft] resumed after 4 batches,: 1/2 batches (50%)")
    tty = progress_callback("sft", logging.getLogger("t"), every=0)
    tty.tty = True
    tty.on_train_start(_trainer(), None)
    assert tty.progress is None


def test_known_third_party_noise_is_dropped_and_real_warnings_pass(caplog):
    from egt.utils.logging import quiet_third_party

    quiet_third_party()
    noisy = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        noisy.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
        noisy.warning("The dataloader does not have many workers")
    assert [r.getMessage() for r in caplog.records] == ["The dataloader does not have many workers"]
