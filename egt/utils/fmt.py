"""Numbers as the end-of-run summary prints them (each stage's ``summary_line``, egt.pipeline)."""

from __future__ import annotations

from typing import Any


def pct(v: Any) -> str:
    """A fraction as a percentage, ``-`` when absent.

    >>> pct(0.4567), pct(None)
    ('45.7%', '-')
    """
    return "-" if v is None else f"{100 * float(v):.1f}%"


def num(v: Any, digits: int = 3) -> str:
    """A float to ``digits`` decimals, anything else as it is, ``-`` when absent.

    >>> num(0.12345), num(7), num(None)
    ('0.123', '7', '-')
    """
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))
