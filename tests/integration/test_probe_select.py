"""probe + select through the real CLI on the tiny model (experiment=quick)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cli_runner import QUICK, cli, done


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def first_run(art):
    return cli(art, *QUICK, "stages=[data,distill,sft,probe,select]", "logger=none", "probe.shard_size=24")


def test_probe_table_and_selection(first_run, art):
    probe = done(art, "probe")
    assert len(probe) == 1
    table = pd.read_parquet(probe[0] / "probe.parquet")
    assert len(table) == 64 and table["id"].is_unique  # experiment=quick: n_rl=64
    for col in (
        "answer_entropy",
        "sentence_entropy",
        "n_samples",
        "answers",
        "correct_score",
        "gen_lengths",
        "format_ok",
        "flipped",
        "ambiguous",
        "difficulty",
        "category",
    ):
        assert col in table, col
    assert len(list((probe[0] / "shards").glob("*.parquet"))) == 3
    assert (probe[0] / "fig2.png").stat().st_size > 0 and "Spearman" in (probe[0] / "fig2.md").read_text()
    (sel_dir,) = done(art, "select")
    sel = json.loads((sel_dir / "selection.json").read_text())
    assert len(sel["ids"]) == round(0.15 * 64) and set(sel["ids"]) <= set(table["id"])
    assert (sel["method"], sel["curriculum"], sel["shuffle_each_epoch"]) == ("entropy", "ascending", False)
    assert "[select] entropy on answer entropy" in first_run and "flipped" in first_run


def test_multirun_probes_once_selects_three_ways(first_run, art):
    out = cli(
        art,
        "-m",
        *QUICK,
        "stages=[probe,select]",
        "logger=none",
        "probe.shard_size=24",
        "entropy=answer,sentence,mix",
        "selection.k=20",
        "curriculum=shuffle",
    )
    assert "[probe] computing artifact" not in out and "[sft] computing artifact" not in out
    assert len(done(art, "probe")) == 1 and len(done(art, "select")) == 4
    scores = {json.loads((d / "selection.json").read_text())["score"] for d in done(art, "select")}
    assert scores == {"answer", "sentence", "mix"}


def test_pass_rate_band_probe_select_rl(first_run, art):
    # the tiny model's sampled outputs rarely parse, so the band starts at 0 here to keep something
    out = cli(
        art,
        *QUICK,
        "stages=[probe,select,rl]",
        "logger=none",
        "probe.shard_size=24",
        "selection=pass_rate",
        "probe.n=8",
        "probe.temperature=1.0",
        "probe.limit=16",
        "selection.method.low=0.0",
        "selection.k=6",
        "rl.max_steps=1",
        "rl.eval_n=0",
    )
    probes = done(art, "probe")
    assert len(probes) == 2  # a sampled probe of n = 8 beside the greedy one
    table = pd.read_parquet(
        next(p for p in probes if (pd.read_parquet(p / "probe.parquet")["n_samples"] == 8).all()) / "probe.parquet"
    )
    sel_dir = next(
        d for d in done(art, "select") if json.loads((d / "selection.json").read_text())["method"] == "pass_rate"
    )
    sel, summary = (json.loads((sel_dir / f).read_text()) for f in ("selection.json", "_SUCCESS.json"))
    rates = dict(zip(table["id"].astype(str), table["correct_score"]))
    band = sorted((1 - r, i) for i, r in rates.items() if r <= 0.87)
    assert sel["ids"] == [i for _, i in band[:6]] and sel["score"] == "difficulty"
    assert sel.get("n_candidates", len(table)) == len(band) and summary["summary"]["probe_draws"] == 8 * 16
    assert summary["summary"]["probe_cpu_seconds"] > 0  # the cost the methods table reports
    assert "by pass_rate on difficulty" in out and "probe 128 outputs" in out
    assert done(art, "rl")


ANSWER_PROBS_PROBE = ["probe.n=2", "probe.temperature=1.0", "probe.answer_probs=true", "probe.limit=16"]


def _select_dir(art, method):
    return next(d for d in done(art, "select") if json.loads((d / "selection.json").read_text())["method"] == method)


def test_bis_analogue_probe_select_rl(first_run, art):
    """selection=bis: a probe with answer-token probabilities (its own key), the BIS analogue per source,
    one RL step. The summary names the analogue and counts what it could not score."""
    out = cli(
        art,
        *QUICK,
        "stages=[probe,select,rl]",
        "logger=none",
        "probe.shard_size=24",
        "selection=bis",
        *ANSWER_PROBS_PROBE,
        "rl.max_steps=1",
        "rl.eval_n=0",
    )
    probe = next(p for p in done(art, "probe") if "p_label" in pd.read_parquet(p / "probe.parquet"))
    table = pd.read_parquet(probe / "probe.parquet")
    assert len(table) == 16 and {"answer_probs", "p_answer_1", "p_label", "source"} <= set(table.columns)
    assert all(len(d) == 2 and len(p) == 2 for d in table["answer_probs"] for p in d)
    sel_dir = _select_dir(art, "bis")
    sel, summary = (json.loads((sel_dir / f).read_text()) for f in ("selection.json", "_SUCCESS.json"))
    s = summary["summary"]
    assert s["method_title"] == "BIS analogue" and s["bis_alpha"] == 0.05 and s["probe_draws"] == 32
    assert sum(s["bis_kept_per_source"].values()) == len(sel["ids"]) == s["n_selected"] > 0
    assert s["bis_unscored"] + len(table) >= len(sel["ids"]) and "flipped_rate" in s and "ambiguous_kept" in s
    assert "by BIS analogue (bis)" in out and "flipped kept" in out
    assert done(art, "rl")


def test_confident_learning_probe_select_rl(first_run, art):
    """selection=confident_learning on the same probe (reused: same key), one RL step; the summary gives the
    number flagged and the samples without pred_probs, which together with the kept make the pool."""
    pytest.importorskip("cleanlab")
    out = cli(
        art,
        *QUICK,
        "stages=[probe,select,rl]",
        "logger=none",
        "probe.shard_size=24",
        "selection=confident_learning",
        *ANSWER_PROBS_PROBE,
        "rl.max_steps=1",
        "rl.eval_n=0",
    )
    assert "[probe] computing artifact" not in out  # the bis test's probe
    sel_dir = _select_dir(art, "confident_learning")
    sel, summary = (json.loads((sel_dir / f).read_text()) for f in ("selection.json", "_SUCCESS.json"))
    s = summary["summary"]
    assert s["cl_filter_by"] == "prune_by_noise_rate" and s["cl_pred_probs"] == "answer_token"
    assert s["cl_flagged"] + len(sel["ids"]) == s["n_pool"] == 16 and 0 <= s["cl_no_pred_probs"] <= 16
    assert "cl_flagged" in out and "flipped kept" in out
    assert done(art, "rl")


def test_two_stage_curriculum_with_hints_probe_select_rl(first_run, art, tmp_path):
    # The tiny model's sampled outputs never give the label (every pass rate is 0), so the pass rates come
    # from an outside probe table: the greedy probe's rows with hand-set rates (k of 8 draws right).
    table = pd.read_parquet(next(p for p in done(art, "probe")) / "probe.parquet").head(12)
    table["correct_score"] = [k / 8 for k in (0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 4, 6)]
    table["n_samples"] = 8
    table.to_parquet(tmp_path / "probe.parquet")
    hint = "Hint: this comparison is hard; check each response's claims against the image carefully."
    out = cli(
        art,
        *QUICK,
        "stages=[probe,select,rl]",
        "logger=none",
        f"probe.table_path={tmp_path / 'probe.parquet'}",
        "selection=pass_rate",
        "probe.n=8",
        "probe.temperature=1.0",
        "curriculum=two_stage",
        "rl.epochs=2",
        f'data.hints="{hint}"',
        "reward._target_=tests.helpers.rl_stub.ShortIsGood",
        "rl.max_new_tokens=16",
        "rl.eval_n=0",
    )
    rates = dict(zip(table["id"].astype(str), table["correct_score"]))
    kept = sorted((1 - r, i) for i, r in rates.items() if 0.1 <= r <= 0.87)  # ascending difficulty, ties by id
    ids = [i for _, i in kept]
    moderate = [i for i in ids if rates[i] >= 0.5]
    sel_dir = next(d for d in done(art, "select") if "stages" in json.loads((d / "selection.json").read_text()))
    sel = json.loads((sel_dir / "selection.json").read_text())
    assert sel["ids"] == ids and sel["stages"]["hard"] == [i for i in ids if rates[i] < 0.5]
    assert len(moderate) == 5 and len(ids) == 9
    (rl,) = [d for d in done(art, "rl") if json.loads((d / "_SUCCESS.json").read_text())["summary"].get("hinted")]
    curves = json.loads((rl / "curves.json").read_text())["steps"]
    by_epoch = {e: [i for s in curves if s["epoch"] == e for i in s["ids"]] for e in (0, 1)}
    assert by_epoch == {0: moderate, 1: ids}  # stage 1: moderate only; stage 2: all, easy to hard
    summary = json.loads((rl / "_SUCCESS.json").read_text())["summary"]
    assert (summary["steps"], summary["stage1_samples"], summary["hard_samples"]) == (2 + 3, 5, 4)
    assert "two stages: 5 moderate, then 4 hard added" in out and "2/3 rollout batches/epoch" in out
