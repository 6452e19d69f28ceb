"""Figure 2: accuracy per entropy bin and the Spearman correlation."""

import math

import numpy as np
import pandas as pd
import pytest

from egt.report.figures import entropy_accuracy, fig2_markdown, plot_fig2, spearman


def test_spearman_hand_worked():
    assert spearman(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(0.8)
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.5)
    assert spearman(np.array([1.0, 1.0]), np.array([0.0, 1.0])) is None


def test_bins_accuracy_falls_with_entropy(tmp_path):
    n = 100
    e = np.linspace(0, 2, n)
    table = pd.DataFrame(
        {
            "answer_entropy": np.where(np.arange(n) == 7, math.inf, e),
            "sentence_entropy": e,
            "correct_score": (e < 1).astype(float),
        }
    )
    df, rho = entropy_accuracy(table, bins=4)
    ans = df[df.metric == "answer"]
    assert ans["n"].sum() == 99 and rho["answer_n_inf"] == 1 and len(ans) == 4
    assert ans["accuracy"].iloc[0] == 1.0 and ans["accuracy"].iloc[-1] == 0.0
    assert rho["answer"] < -0.8 and rho["sentence"] < -0.8
    path = plot_fig2(df, tmp_path / "fig2.png", rho)
    assert path.read_bytes()[:4] == b"\x89PNG"
    md = fig2_markdown(df, rho)
    assert "Spearman" in md and md.count("\n| ") >= 8


def test_fig2_is_drawn_once_per_distinct_figure_not_per_probe_artifact(tmp_path):
    from egt.report.sweep_figures import write_fig2

    e = np.linspace(0, 2, 40)
    plain = pd.DataFrame({"answer_entropy": e, "sentence_entropy": e, "correct_score": (e < 1).astype(float)})
    both_orders = plain.assign(answer_entropy_swapped=e[::-1])  # extra columns, the same Figure 2
    other = plain.assign(correct_score=(e > 1).astype(float))

    def job(name, key, table):
        d = tmp_path / name
        d.mkdir()
        table.to_parquet(d / "probe.parquet")
        return {"_dir": str(d), "files": {"probe": "probe.parquet"}, "stages": {"probe": {"key": key}}}

    out = tmp_path / "out"
    out.mkdir()
    write_fig2([job("a", "k2", both_orders), job("b", "k1", plain), job("c", "k1", plain)], out)
    assert sorted(p.name for p in out.iterdir()) == ["fig2.json", "fig2.md", "fig2.png"]
    assert "/b/probe.parquet" in (out / "fig2.md").read_text()  # named after the probe most jobs share
    out2 = tmp_path / "out2"
    out2.mkdir()
    write_fig2([job("d", "k1", plain), job("e", "k3", other)], out2)
    assert sorted(p.stem for p in out2.glob("*.png")) == ["fig2_k1", "fig2_k3"]
