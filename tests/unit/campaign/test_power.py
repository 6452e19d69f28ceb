"""egt.campaign.power: Student t without scipy, the MDE formula against simulation, the paired difference's
CI on simulated benches, and the seed sds measured from report tables."""

from __future__ import annotations

import numpy as np
import pytest

from egt.campaign.power import main, mde, measured_seed_sds, paired_difference, paired_se, power_table, t_cdf, t_ppf

# Student t quantiles from printed tables (e.g. Abramowitz & Stegun 26.10)
TABLE = [
    (0.975, 1, 12.7062),
    (0.975, 2, 4.3027),
    (0.975, 5, 2.5706),
    (0.975, 10, 2.2281),
    (0.975, 30, 2.0423),
    (0.975, 120, 1.9799),
    (0.8, 2, 1.0607),
    (0.8, 5, 0.9195),
    (0.8, 10, 0.8791),
    (0.95, 4, 2.1318),
]


@pytest.mark.parametrize("p,df,t", TABLE)
def test_t_quantiles_match_the_printed_table(p, df, t):
    assert t_ppf(p, df) == pytest.approx(t, abs=1e-4)
    assert t_cdf(t, df) == pytest.approx(p, abs=3e-5)  # the table rounds t to 4 decimals


def test_t_is_symmetric_and_tends_to_the_normal():
    assert t_cdf(-1.3, 7) == pytest.approx(1 - t_cdf(1.3, 7))
    assert t_ppf(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)
    assert t_ppf(0.975, 2.5) < t_ppf(0.975, 2) and t_ppf(0.975, 2.5) > t_ppf(0.975, 3)  # fractional df


@pytest.mark.parametrize("seeds,expected", [(3, 0.766), (5, 0.792), (10, 0.799)])
def test_a_true_difference_equal_to_the_mde_is_found_about_80_percent_of_the_time(seeds, expected):
    """The module docstring's accuracy statement: a paired t-test over `seeds` normal differences."""
    d = mde(1.0, seeds, 0.0, 300)
    x = np.random.default_rng(0).normal(d, 1.0, size=(40_000, seeds))
    t = x.mean(1) / (x.std(1, ddof=1) / np.sqrt(seeds))
    assert (np.abs(t) > t_ppf(0.975, seeds - 1)).mean() == pytest.approx(expected, abs=0.01)


def test_more_seeds_and_items_detect_smaller_differences():
    rows = power_table(3.0, 0.1, [1000, 3000], [5, 10, 20])
    assert rows[0][5] > rows[0][10] > rows[0][20]
    assert rows[0][20] > rows[1][20]
    se, df = paired_se(0.0, 5, 0.1, 1000)  # only the bench term: the McNemar-style paired-items SE
    assert se == pytest.approx(1.0) and df == pytest.approx(999)


def _bench(rng, seeds, items, gain):
    """Correctness [S, N] of two arms from one SFT model: item difficulty, a seed shift, Bernoulli noise."""
    base = rng.uniform(0.3, 0.95, items)
    out = []
    for g in (gain, 0.0):
        shift = rng.normal(0.0, 0.02, (seeds, 1))
        out.append((rng.uniform(size=(seeds, items)) < np.clip(base + g + shift, 0, 1)).astype(np.int8))
    return out


def test_the_paired_ci_keeps_its_level_and_finds_a_real_difference():
    rng = np.random.default_rng(1)
    null = [paired_difference(*_bench(rng, 6, 400, 0.0)) for _ in range(300)]
    covered = np.mean([d.lo <= 0 <= d.hi for d in null])
    assert 0.93 <= covered <= 1.0  # conservative by construction (it counts the residual twice)
    found = np.mean([paired_difference(*_bench(rng, 6, 400, 0.08)).lo > 0 for _ in range(100)])
    assert found > 0.8


def test_against_one_shared_model_only_the_item_term_is_left():
    a = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    d = paired_difference(a, np.array([[0, 1, 0, 0]]))
    assert d.mean == 0.25 and d.n_seeds == 2
    with pytest.raises(ValueError, match="same items"):
        paired_difference(a, np.zeros((1, 3)))


def test_measured_seed_sds_read_each_distinct_cell_once(tmp_path):
    head = "| Method | Overall |\n|:--|--:|\n"
    (tmp_path / "table2.md").write_text(
        head + "| SFT | 86.00 |\n| + Full RL | 86.44 ± 0.84 |\n| + Sel | **86.78 ± 0.38** |\n"
    )
    (tmp_path / "table3.md").write_text(head + "| Entropy | **86.78 ± 0.38** |\n| Random | 85.89 ± 0.69 |\n")
    (tmp_path / "fig4.md").write_text(head + "| 15% | 86.44 ± 0.19 |\n")
    assert sorted(measured_seed_sds(tmp_path)) == [0.19, 0.38, 0.69, 0.84]


def test_the_cli_prints_the_measured_sds_and_the_tables(tmp_path, capsys):
    (tmp_path / "table2.md").write_text("| Method | Overall |\n|:--|--:|\n| a | 1.00 ± 1.00 |\n| b | 2.00 ± 3.00 |\n")
    assert main(["--runs", str(tmp_path), "--seed-sd", "2.0", "--bench", "1000", "--seeds", "5", "10"]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 2.24 | 4 | 3.00 |" in out  # pooled sqrt((1 + 9) / 2)
    assert "RL arm vs RL arm" in out and "RL arm vs SFT" in out and "| 1,000 |" in out
