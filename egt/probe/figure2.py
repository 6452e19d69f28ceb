"""Figure 2 of the paper from a probe table: accuracy per entropy bin, and Spearman ρ.

Samples are binned by entropy into equal-count bins (entropy is skewed, so
equal-width bins would leave most bins nearly empty); accuracy per bin is the
mean correctness score (agreement with the data set's label, as a user without
clean labels measures it). Samples with no answer (+inf answer entropy) are
left out of the answer bins and counted. Spearman ρ between entropy and
correctness is computed on ranks with ties averaged (no scipy needed).

The probe stage writes it with every probe table; ``egt.report`` re-exports it for sweeps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["METRICS", "spearman", "entropy_accuracy", "fig2_markdown", "plot_fig2", "save_figure"]
METRICS = (("answer", "answer_entropy"), ("sentence", "sentence_entropy"))


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks for ties); None if undefined.

    >>> spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40]))
    1.0
    >>> spearman(np.array([1, 2, 3]), np.array([3, 2, 1]))
    -1.0
    """
    if len(x) < 2:
        return None
    rx = pd.Series(np.asarray(x, dtype=np.float64)).rank(method="average").to_numpy()
    ry = pd.Series(np.asarray(y, dtype=np.float64)).rank(method="average").to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return round(float((rx * ry).sum() / den), 4) if den > 0 else None


def entropy_accuracy(table: pd.DataFrame, bins: int = 10) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """Accuracy per equal-count entropy bin for answer and sentence entropy, and Spearman ρ.

    Returns rows (metric, bin, lo, hi, mean_entropy, n, accuracy) and
    {"answer": ρ, "sentence": ρ, "answer_n_inf": count}.
    """
    rows, rho = [], {}
    for metric, col in METRICS:
        e = table[col].to_numpy(dtype=np.float64)
        acc = table["correct_score"].to_numpy(dtype=np.float64)
        finite = np.isfinite(e)
        rho[metric] = spearman(e[finite], acc[finite])
        rho[f"{metric}_n_inf"] = int((~finite).sum())
        e, acc = e[finite], acc[finite]
        if len(e) == 0:
            continue
        order = np.lexsort((np.arange(len(e)), e))
        for b, part in enumerate(np.array_split(order, min(bins, len(e)))):
            rows.append(
                {
                    "metric": metric,
                    "bin": b,
                    "lo": float(e[part].min()),
                    "hi": float(e[part].max()),
                    "mean_entropy": float(e[part].mean()),
                    "n": int(len(part)),
                    "accuracy": float(acc[part].mean()),
                }
            )
    return pd.DataFrame(rows), rho


def fig2_markdown(df: pd.DataFrame, rho: dict[str, float | None]) -> str:
    lines = ["# Figure 2: accuracy per entropy bin", ""]
    for metric, _ in METRICS:
        part = df[df["metric"] == metric] if len(df) else df
        lines += [
            f"## {metric} entropy (Spearman ρ with correctness = {rho.get(metric)}; "
            f"no answer: {rho.get(f'{metric}_n_inf', 0)})",
            "",
            "| bin | entropy range | mean entropy | n | accuracy |",
            "|---|---|---|---|---|",
        ]
        for r in part.itertuples():
            lines.append(f"| {r.bin} | {r.lo:.4f}–{r.hi:.4f} | {r.mean_entropy:.4f} | {r.n} | {r.accuracy:.3f} |")
        lines.append("")
    return "\n".join(lines)


def plot_fig2(
    df: pd.DataFrame,
    path: str | Path,
    rho: dict[str, float | None] | None = None,
    half_width: Callable[[float, int], float] | None = None,
) -> Path:
    """Accuracy per entropy bin, one panel per entropy kind, as a PNG: bars, or with ``half_width``
    (accuracy, n) → CI half width (e.g. Wilson's) points with error bars, in percent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rho = rho or {}
    scale = 100 if half_width else 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (metric, _) in zip(axes, METRICS):
        part = df[df["metric"] == metric] if len(df) else df
        if len(part):
            if half_width:
                err = [scale * half_width(a, n) for a, n in zip(part["accuracy"], part["n"])]
                ax.errorbar(part["bin"], scale * part["accuracy"], yerr=err, fmt="o", capsize=3, color="#4c72b0")
            else:
                ax.bar(part["bin"], part["accuracy"], color="#4c72b0")
            ax.set_xticks(part["bin"], [f"{v:.3g}" for v in part["mean_entropy"]], rotation=45, fontsize=7)
        ax.set_ylim(0, scale)
        ax.set_xlabel(f"{metric} entropy (bin mean, nats)")
        ax.set_ylabel("accuracy (%), 95% CI" if half_width else "accuracy")
        ax.set_title(f"{metric} entropy, Spearman ρ = {rho.get(metric)}")
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (PNG at 120 dpi, parent folders made) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
