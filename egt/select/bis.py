"""BIS, the Balanced-Information Score of Li et al. 2026 ("Training Data Efficiency in Multimodal Process
Reward Models", arXiv 2602.04145), as its released code computes it: ``compute_bis`` in
scripts/build_bis_subset.py, JinYuanLi0012/Balanced-Info-MPRM@81c3de613427d8f2cf6f379419ffd97050dde6df.

For one rollout of process-reward data with Monte-Carlo step scores s_j: y_j = 1 if s_j > 0; p = mean(y_j);
R = the mean of s_j over the positive steps (R = 1 when no step is positive: "an all-negative rollout treated
as a noise-free negative"); BIS = (p (1 − p) + α) · R, higher = kept first (their README: the top 10% per source
with α = 0.2, or 25% with α = 0.05). egt's judges are outcome judges without step labels: this is the
formula itself; an outcome-judge analogue (p over the probe's draws, R the probability on the label's answer
token) needs the probe to record that probability, which it does not yet.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["bis_score"]


def bis_score(step_scores: Sequence[float], alpha: float) -> float:
    """BIS of one rollout from its step scores (any real numbers; > 0 is a positive step).

    >>> bis_score([0.5, -0.2, 0.0, 1.0], alpha=0.2)  # p = 1/2, R = 0.75: (0.25 + 0.2) · 0.75
    0.3375
    >>> bis_score([-1.0, 0.0], alpha=0.05), bis_score([0.4, 0.8], alpha=0.05)  # no positive: R = 1; all: p(1−p) = 0
    (0.05, 0.030000000000000006)
    """
    n = len(step_scores)
    if n == 0:
        raise ValueError("bis_score: a rollout without steps")
    positive = [s for s in step_scores if s > 0.0]
    p = len(positive) / n
    reward = sum(positive) / len(positive) if positive else 1.0
    return (p * (1.0 - p) + alpha) * reward
