"""Figures of the paper from run outputs. Figure 2 (accuracy per entropy bin) lives with the probe
that draws it (:mod:`egt.probe.figure2`, re-exported here); Figure 4: accuracy against the fraction
of lowest-entropy data (``plot_fig4``).
"""

from __future__ import annotations

from pathlib import Path

from egt.probe.figure2 import METRICS, entropy_accuracy, fig2_markdown, plot_fig2, spearman
from egt.probe.figure2 import save_figure as _save

__all__ = ["METRICS", "spearman", "entropy_accuracy", "fig2_markdown", "plot_fig2", "plot_fig4"]


def plot_fig4(
    points: list[tuple[float, float, float | None]],
    path: str | Path,
    sft: tuple[float, float | None] | None = None,
    ylabel: str = "accuracy (%)",
    title: str = "",
) -> Path:
    """Accuracy (mean ± sd over seeds) against the % of the lowest-entropy data used for RL.

    ``points``: (percent, mean, sd or None) of the RL runs; ``sft``: (mean, sd) drawn at 0% with
    its own marker (the 0% point is the SFT model, not an RL run).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    pts = sorted(points)
    xs, ys, sds = [p[0] for p in pts], [p[1] for p in pts], [p[2] or 0.0 for p in pts]
    if sft is not None:
        ax.errorbar([0.0], [sft[0]], yerr=[sft[1] or 0.0], fmt="s", color="#dd8452", capsize=3, label="SFT (0%)")
        xs, ys, sds = [0.0] + xs, [sft[0]] + ys, [sft[1] or 0.0] + sds
    ax.errorbar(xs, ys, yerr=sds, fmt="-o", color="#4c72b0", capsize=3, label="RL on lowest-entropy data", zorder=1)
    ax.set_xlabel("lowest-entropy data used (% of rl_pool)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(-3, 103)
    ax.set_title(title or "Figure 4: data scale")
    ax.legend(fontsize=8)
    return _save(fig, path)
