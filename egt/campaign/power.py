"""Power of the reproduction's paired comparisons (issue #20), and the paired difference with its 95% CI.

**The model.** Arms A and B are RL runs from the same SFT model, repeated over seeds s = 1..S (seed s
of A and of B share the seed), each scored on the same N bench items. Per seed and item
x[s, i] = c_A[s, i] - c_B[s, i] in {-1, 0, 1} (c = 1 where the judge is right). The estimate is the
mean of x. With a seed effect u_s, an item effect d_i and a residual e (crossed random effects):

    Var(mean x) = var_u / S + tau2 / N + var_e / (S N)

- ``var_u``: how much the difference moves from seed to seed (RL's randomness). The sd over seeds in
  docs/reproduction measures it per arm (at N = 300 it also holds ``var_e / 300``).
- ``tau2``: how much the items disagree about the difference: another bench of N items drawn from the
  world gives another number (bench sampling). It is at most the variance of x over items,
  ``p10 + p01 - (p10 - p01)**2`` (:func:`paired_binary_var`, McNemar's discordant pairs), which
  planning takes whole (conservative: it counts all discordance as systematic).
- ``var_e / (S N)``: small next to the other two.

**Planning** (:func:`paired_se`, :func:`mde`): SE = sqrt(seed_var / S + item_var / N), with
``seed_var`` the variance over seeds of one seed's difference (points²): ``sd_A² + sd_B²`` for two RL
arms whose seeds are uncorrelated (:func:`seed_sd_of_difference`), ``sd_A²`` against the shared SFT
model (it has no seed variance), and Welch–Satterthwaite degrees of freedom. The minimum detectable
difference at two-sided level alpha with power 1 - beta is ``(t[1-alpha/2, df] + t[1-beta, df]) * SE``,
the usual two-quantile approximation to the noncentral t. Its accuracy, measured by simulation
(tests/unit/campaign/test_power.py): a paired t-test over S seeds of normal differences, with a true
difference equal to the MDE, rejects in 80% of runs within ±2 points of power for S >= 5; at S = 3
(df = 2) the true power is about 76%.

**Analysis** (:func:`paired_difference`): the same decomposition estimated from the S × N matrix of
x: var(per-seed means) / S + var(per-item means) / N. It counts var_e / (S N) twice (conservative, and
never negative), df by Welch–Satterthwaite; against a single model (the SFT row) with one seed only the
item term is left (McNemar's paired-items variance).

Student t without scipy (not an egt dependency): the CDF from the regularized incomplete beta
function (continued fraction, Numerical Recipes §6.4; exact to ~1e-12 for any df > 0), the quantile
by bisection; the normal quantile from :class:`statistics.NormalDist`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "t_cdf",
    "t_ppf",
    "paired_binary_var",
    "seed_sd_of_difference",
    "pooled_sd",
    "paired_se",
    "mde",
    "power_table",
    "PairedDiff",
    "paired_difference",
    "mean_ci",
    "spearman_ci",
    "mde_correlation",
    "measured_seed_sds",
]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (any df > 0).

    df = 1 is the Cauchy distribution, 1/2 + atan(t)/pi: at t = 1, 0.75.
    >>> round(t_cdf(1.0, 1), 10)
    0.75
    >>> t_cdf(0.0, 7)
    0.5
    """
    if df <= 0:
        raise ValueError(f"t_cdf: df must be > 0, got {df}")
    if t == 0:
        return 0.5
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on :func:`t_cdf`; df > 1e7: the normal quantile).

    Hand-worked: for df = 2 the quantile is (2p - 1) / sqrt(2 p (1 - p)); at p = 0.975 that is
    0.95 / sqrt(0.04875) = 0.95 / 0.22079 = 4.3027. For df = 1, tan(pi (p - 1/2)) = tan(0.475 pi) = 12.706.
    >>> round(t_ppf(0.975, 2), 4), round(t_ppf(0.975, 1), 3), round(t_ppf(0.975, 10), 4)
    (4.3027, 12.706, 2.2281)
    >>> round(t_ppf(0.8, 4), 4), round(t_ppf(0.025, 2), 4)
    (0.941, -4.3027)
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: p must be in (0, 1), got {p}")
    if df > 1e7:
        return NormalDist().inv_cdf(p)
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def paired_binary_var(p10: float, p01: float) -> float:
    """Variance over items of x = c_A - c_B in {-1, 0, 1}: A right and B wrong on a fraction p10 of
    the items, the reverse on p01. E[x] = p10 - p01, E[x²] = p10 + p01.

    >>> round(paired_binary_var(0.10, 0.05), 4)  # 0.15 - 0.05**2
    0.1475
    """
    return p10 + p01 - (p10 - p01) ** 2


def seed_sd_of_difference(sd_a: float, sd_b: float = 0.0, corr: float = 0.0) -> float:
    """sd over seeds of one seed's difference A - B (``sd_b = 0``: B is the shared SFT model).

    >>> seed_sd_of_difference(3.0, 4.0)
    5.0
    >>> seed_sd_of_difference(2.0, 2.0, corr=0.5)
    2.0
    """
    return math.sqrt(max(sd_a**2 + sd_b**2 - 2.0 * corr * sd_a * sd_b, 0.0))


def pooled_sd(sds: Sequence[float], n_per: int | Sequence[int]) -> tuple[float, int]:
    """(pooled sd, its degrees of freedom) of several groups' sample sds.

    >>> pooled_sd([1.0, 3.0], 3)  # sqrt((2 * 1 + 2 * 9) / 4)
    (2.23606797749979, 4)
    """
    ns = [n_per] * len(sds) if isinstance(n_per, int) else list(n_per)
    df = sum(n - 1 for n in ns)
    return math.sqrt(sum((n - 1) * s * s for s, n in zip(sds, ns)) / df), df


def paired_se(seed_var: float, n_seeds: int, item_var: float, n_items: int) -> tuple[float, float]:
    """(SE, Welch–Satterthwaite df) of a paired difference in points.

    ``seed_var``: variance over seeds of one seed's difference (points²); ``item_var``: variance over
    items of x (a fraction², e.g. :func:`paired_binary_var`). 2 seeds of variance 2, 10,000 items of
    variance 0.25: SE² = 2/2 + 0.25 * 100² / 10,000 = 1.25.
    >>> se, df = paired_se(2.0, 2, 0.25, 10_000)
    >>> round(se ** 2, 6), round(df, 2)
    (1.25, 1.56)
    """
    a = seed_var / n_seeds
    b = item_var * 1e4 / n_items
    if a + b == 0:
        return 0.0, float("inf")
    den = (a * a / (n_seeds - 1) if n_seeds > 1 and a > 0 else 0.0) + (b * b / (n_items - 1) if b > 0 else 0.0)
    if n_seeds <= 1 and a > 0:
        raise ValueError("paired_se: one seed cannot carry a seed variance")
    return math.sqrt(a + b), ((a + b) ** 2 / den if den > 0 else float("inf"))


def mde(
    seed_sd_diff: float, n_seeds: int, item_var: float, n_items: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Minimum detectable difference (points): (t[1 - alpha/2] + t[power]) * SE at the Satterthwaite df.

    No bench term, 5 seeds, sd 1: (t[.975, 4] + t[.8, 4]) / sqrt(5) = (2.7764 + 0.9410) / 2.2361.
    >>> round(mde(1.0, 5, 0.0, 300), 3)
    1.662
    """
    se, df = paired_se(seed_sd_diff**2, n_seeds, item_var, n_items)
    return (t_ppf(1 - alpha / 2, df) + t_ppf(power, df)) * se


def power_table(
    seed_sd_diff: float,
    item_var: float,
    n_items: Sequence[int],
    n_seeds: Sequence[int],
    alpha: float = 0.05,
    power: float = 0.8,
) -> list[dict[str, float]]:
    """One row per bench size: {"n_items": N, S: MDE in points for each S in ``n_seeds``}."""
    return [{"n_items": n, **{s: mde(seed_sd_diff, s, item_var, n, alpha, power) for s in n_seeds}} for n in n_items]


@dataclass(frozen=True)
class PairedDiff:
    """A paired difference (fractions, not points) with its (1 - alpha) CI."""

    mean: float
    se: float
    df: float
    lo: float
    hi: float
    n_seeds: int
    n_items: int


def paired_difference(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> PairedDiff:
    """Mean of A - B over seeds and items with its CI (module docstring: the variance terms).

    ``a``: [S, N] correctness of arm A per seed and bench item (1 right, 0 wrong); ``b``: [S, N]
    (same seeds) or [1, N] (one model, e.g. SFT). Two seeds, two items against a model wrong on both:
    per-seed differences 0.5 and 1 (variance 1/8, over 2 seeds: 1/16), per-item means 1 and 0.5
    (variance 1/8, over 2 items: 1/16), so SE² = 1/8 and df = (1/8)² / ((1/16)² + (1/16)²) = 2.
    >>> d = paired_difference(np.array([[1, 0], [1, 1]]), np.array([[0, 0]]))
    >>> d.mean, round(d.se ** 2, 12), d.df
    (0.75, 0.125, 2.0)
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[1] or b.shape[0] not in (1, a.shape[0]):
        raise ValueError(
            f"paired_difference: a [S, N] and b [S or 1, N] over the same items, got {a.shape} and {b.shape}"
        )
    x = a - b  # [S, N]
    s, n = x.shape
    seed_term = float(x.mean(axis=1).var(ddof=1)) / s if s > 1 else 0.0
    item_term = float(x.mean(axis=0).var(ddof=1)) / n if n > 1 else 0.0
    den = (seed_term**2 / (s - 1) if s > 1 else 0.0) + (item_term**2 / (n - 1) if n > 1 else 0.0)
    df = (seed_term + item_term) ** 2 / den if den > 0 else float("inf")
    se = math.sqrt(seed_term + item_term)
    half = t_ppf(1 - alpha / 2, df) * se if se > 0 else 0.0
    mean = float(x.mean())
    return PairedDiff(mean, se, df, mean - half, mean + half, s, n)


def mean_ci(values: Sequence[float], alpha: float = 0.05) -> tuple[float, Optional[float]]:
    """(mean, half-width of its t interval over the values) — a table cell's mean ± 95% CI over seeds.

    >>> m, h = mean_ci([1.0, 2.0, 3.0])  # sd 1, t[.975, 2] / sqrt(3)
    >>> m, round(h, 4)
    (2.0, 2.4841)
    """
    xs = [float(v) for v in values]
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    sd = math.sqrt(sum((v - m) ** 2 for v in xs) / (len(xs) - 1))
    return m, t_ppf(1 - alpha / 2, len(xs) - 1) * sd / math.sqrt(len(xs))


def spearman_ci(rho: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """CI of a Spearman correlation: Fisher z with SE 1.06 / sqrt(n - 3) (Fieller, Hartley & Pearson 1957).

    >>> [round(v, 3) for v in spearman_ci(0.0, 1003)]  # z half-width 1.96 * 1.06 / 31.62
    [-0.066, 0.066]
    """
    z = math.atanh(max(min(rho, 0.999999), -0.999999))
    half = NormalDist().inv_cdf(1 - alpha / 2) * 1.06 / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def mde_correlation(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest |rho| a Spearman correlation over n samples detects (Fisher z, SE 1.06 / sqrt(n - 3)).

    >>> round(mde_correlation(1000), 3)
    0.094
    """
    q = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return math.tanh(q * 1.06 / math.sqrt(n - 3))


def measured_seed_sds(run_dir: str | Path, column: str = "Overall") -> list[float]:
    """The sd over seeds (points) of every distinct cell of a run's Markdown tables (``table*.md``,
    ``fig4.md``: "mean ± sd" cells, as egt.report writes them); a cell repeated across tables counts once."""
    cells: dict[tuple[str, ...], float] = {}
    for path in sorted(Path(run_dir).glob("table*.md")) + sorted(Path(run_dir).glob("fig4.md")):
        header: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
            if line.startswith("| Method"):
                header = parts
            elif header and column in header and line.startswith("| ") and len(parts) == len(header):
                m = re.match(r"([-\d.]+) ± ([\d.]+)", parts[header.index(column)])
                if m:
                    cells[tuple(parts[1:])] = float(m.group(2))
    return list(cells.values())


def _table(title: str, rows: list[dict[str, float]], seeds: Sequence[int]) -> str:
    lines = [
        f"**{title}**",
        "",
        "| bench items | " + " | ".join(f"{s} seeds" for s in seeds) + " |",
        "|--:|" + "--:|" * len(seeds),
    ]
    lines += [f"| {r['n_items']:,} | " + " | ".join(f"{r[s]:.2f}" for s in seeds) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m egt.campaign.power [--runs DIR ...] [--seed-sd SD ...] [--item-var Q] [--bench N ...]
    [--seeds S ...]``: the measured seed sds of earlier runs and the MDE tables (Markdown)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m egt.campaign.power", description=main.__doc__)
    ap.add_argument("--runs", nargs="*", default=[], help="report folders (docs/reproduction/<run>) to measure")
    ap.add_argument("--seed-sd", type=float, nargs="*", default=[], help="per-arm sd over seeds (points)")
    ap.add_argument("--item-var", type=float, default=0.10, help="per-item variance of the paired difference")
    ap.add_argument("--bench", type=int, nargs="*", default=[300, 1000, 2000, 3000, 5000])
    ap.add_argument("--seeds", type=int, nargs="*", default=[3, 5, 6, 8, 10, 15, 20, 30])
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--power", type=float, default=0.8)
    args = ap.parse_args(argv)
    sds = list(args.seed_sd)
    if args.runs:
        print("| run | cells | pooled sd over seeds (points) | df | largest |\n|:--|--:|--:|--:|--:|")
    for run in args.runs:
        cells = measured_seed_sds(run)
        if cells:
            sd, df = pooled_sd(cells, 3)
            print(f"| {run} | {len(cells)} | {sd:.2f} | {df} | {max(cells):.2f} |")
    for sd in sds:
        for what, sdd in (("RL arm vs RL arm", seed_sd_of_difference(sd, sd)), ("RL arm vs SFT", sd)):
            rows = power_table(sdd, args.item_var, args.bench, args.seeds, args.alpha, args.power)
            print(
                "\n"
                + _table(
                    f"MDE (points), {what}: arm sd {sd:g}, item variance {args.item_var:g}, "
                    f"alpha {args.alpha:g}, power {args.power:g}",
                    rows,
                    args.seeds,
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
