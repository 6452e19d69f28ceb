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

    def __init__(self, total: int, desc: str, logger: logging.Logger, unit: str = "samples", every: float = 30.0,
                 enabled: bool = True, tty: bool | None = None):
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
        return (f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%), "
                f"{rate:,.0f} {self.unit}/s{left}")

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
