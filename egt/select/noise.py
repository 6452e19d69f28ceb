"""Does entropy find label noise? (synthetic world: meta flags ``flipped`` / ``ambiguous``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["auroc", "noise_breakdown", "noise_at_fractions"]


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """P(score of a random positive > score of a random negative), ties count half (Mann–Whitney).

    >>> auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([False, False, True, True]))
    1.0
    """
    pos = np.asarray(positive, dtype=bool)
    if pos.all() or not pos.any():
        return None
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _flag(table: pd.DataFrame, name: str) -> np.ndarray | None:
    if name not in table:
        return None
    return table[name].fillna(False).to_numpy(dtype=bool)


def noise_breakdown(table: pd.DataFrame, kept: np.ndarray) -> dict[str, Any]:
    """Kept / dropped counts of flipped and ambiguous samples, and precision / recall of
    "dropped ⇒ noisy" (noisy = flipped or ambiguous). Empty outside the world."""
    kept = np.asarray(kept, dtype=bool)
    flipped, ambiguous = _flag(table, "flipped"), _flag(table, "ambiguous")
    if flipped is None or ambiguous is None:
        return {}
    out: dict[str, Any] = {}
    for name, flag in (("flipped", flipped), ("ambiguous", ambiguous), ("noisy", flipped | ambiguous)):
        out[f"{name}_kept"] = int((flag & kept).sum())
        out[f"{name}_dropped"] = int((flag & ~kept).sum())
        dropped = int((~kept).sum())
        out[f"{name}_precision"] = round(float((flag & ~kept).sum() / dropped), 4) if dropped else None
        out[f"{name}_recall"] = round(float((flag & ~kept).sum() / flag.sum()), 4) if flag.any() else None
        out[f"{name}_rate"] = round(float(flag.mean()), 4)
    return out


def noise_at_fractions(
    table: pd.DataFrame, scores: np.ndarray, fractions: tuple[float, ...] = (0.15, 0.5)
) -> dict[str, Any]:
    """For keeping the lowest-score fraction f: precision / recall of dropping flipped labels,
    plus the AUROC of the score as a flipped-label detector."""
    flipped = _flag(table, "flipped")
    if flipped is None:
        return {}
    order = np.lexsort((table["id"].to_numpy().astype(str), scores))
    out: dict[str, Any] = {"flipped_auroc": auroc(np.nan_to_num(scores, posinf=1e30), flipped)}
    for f in fractions:
        kept = np.zeros(len(table), dtype=bool)
        kept[order[: int(round(f * len(table)))]] = True
        nb = noise_breakdown(table, kept)
        pct = int(round(100 * f))
        out[f"keep{pct}_flipped_precision"] = nb["flipped_precision"]
        out[f"keep{pct}_flipped_recall"] = nb["flipped_recall"]
        out[f"keep{pct}_flipped_in_kept"] = round(nb["flipped_kept"] / max(kept.sum(), 1), 4)
    return out
