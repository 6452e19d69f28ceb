"""Progress of long loops: a tqdm bar on a terminal, one log line every so often elsewhere.

A tqdm bar written to a log file (SLURM, ``nohup``, CI) is a stream of carriage returns; there the
same progress is a plain line — done, rate, time left — every ``every`` seconds and at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm.auto import tqdm


def _clock(seconds: float) -> str:
    """``3m05s``-style duration.

    >>> _clock(185), _clock(7.2), _clock(3725)
    ('3m05s', '7s', '1h02m05s')
    """
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """``update(n)`` as work is done; ``close()`` (or leave the ``with`` block) at the end.

    ``enabled=False`` (e.g. ranks other than 0) shows nothing. ``tty`` defaults to whether stderr is
    a terminal; without one, ``logger`` gets ``"<desc>: 1,024/100,000 unit (1%), 512 unit/s, 3m13s left"``.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        logger: logging.Logger,
        unit: str = "samples",
        every: float = 30.0,
        enabled: bool = True,
        tty: bool | None = None,
    ):
        self.total, self.desc, self.log, self.unit, self.every = total, desc, logger, unit, every
        self.enabled = enabled and total > 0
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.done, self.t0 = 0, time.perf_counter()
        self._last = self.t0
        self.bar: Any = None
        if self.enabled and self.tty:
            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self._last >= self.every:
            self._line()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.done / elapsed
        left = f", {_clock((self.total - self.done) / rate)} left" if 0 < self.done < self.total else ""
        if self.total <= 0:  # a total not known in advance (a loader without a length)
            return f"{self.desc}: {self.done:,} {self.unit}, {rate:,.3g} {self.unit}/s"
        return (
            f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%), "
            f"{rate:,.3g} {self.unit}/s{left}"
        )

    def _line(self) -> None:
        self._last = time.perf_counter()
        self.log.info(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.done:
            self._line()
            self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ProgressLog:
    """A Lightning callback: where stderr is not a terminal (a log file under SLURM, ``nohup``, CI),
    one line of training progress every ``every`` seconds — batches done of the run's total, rate,
    time left, and the last logged value of ``metric`` — instead of tqdm's carriage returns (turn
    Lightning's own bar off there: ``enable_progress_bar=sys.stderr.isatty()``). On a terminal it
    does nothing; Lightning's bar shows. Rank 0 only."""

    def __init__(
        self,
        stage: str,
        logger: logging.Logger,
        metric: str | None = None,
        every: float = 30.0,
        tty: bool | None = None,
    ):
        # not .log: Lightning sets callback.log
        self.stage, self.out, self.metric, self.every = stage, logger, metric, every
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.progress: Progress | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.tty or not trainer.is_global_zero:
            return
        per_epoch = trainer.num_training_batches
        total = per_epoch * max(1, trainer.max_epochs or 1) if per_epoch != float("inf") else 0
        if trainer.max_steps and trainer.max_steps > 0:  # optimizer steps: batches = steps × accumulation
            cap = trainer.max_steps * int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
            total = min(total, cap) if total else cap
        done = int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)  # a resumed run: what is left
        desc = f"[{self.stage}]" + (f" resumed after {done} batches," if done else "")
        self.progress = Progress(max(0, int(total) - done), desc, self.out, unit="batches", every=self.every, tty=False)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        p = self.progress
        if p is None:
            return
        p.done += 1
        if time.perf_counter() - p._last >= self.every or 0 < p.total <= p.done:
            p._last = time.perf_counter()
            value = trainer.callback_metrics.get(self.metric) if self.metric else None
            self.out.info(p.line() + (f"; {self.metric} {float(value):.4g}" if value is not None else ""))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.progress = None


def progress_callback(stage: str, logger: logging.Logger, metric: str | None = None, every: float = 30.0) -> Any:
    """A :class:`ProgressLog` that is also a ``lightning.pytorch.Callback`` (imported here, not at module
    import, so egt.utils stays free of Lightning)."""
    from lightning.pytorch.callbacks import Callback

    cls = type("ProgressLogCallback", (ProgressLog, Callback), {})
    return cls(stage, logger, metric, every)
