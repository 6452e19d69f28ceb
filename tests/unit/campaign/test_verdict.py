"""Verdicts from hand-made item-level results: claims that hold, are refuted or stay inconclusive, and the
whole written reproduction from hand-made sweep jobs with their eval predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from egt.campaign.paired import ci_tables_markdown, load_cells
from egt.campaign.reproduction import detection_rows, write_format, write_reproduction
from egt.campaign.verdict import (
    BEYOND,
    CLAIMS,
    HOLDS,
    INCONCLUSIVE,
    REFUTED,
    SHARED,
    Link,
    beyond_rows,
    claim_rows,
    link_row,
    method_rows,
    methods_markdown,
    verdict_markdown,
)
from egt.sweep import load_jobs

N, SEEDS = 2000, 6
RNG = np.random.default_rng(0)
SFT = (RNG.uniform(size=N) < 0.7).astype(np.int8)
WRONG = np.flatnonzero(SFT == 0)


def arm(gain_pts: float, seed_sd_pts: float = 0.0, rng_seed: int = 1) -> dict[int, np.ndarray]:
    """Per seed: the SFT vector with gain_pts (+ a seed shift) points of its wrong items made right, the
    same items in every arm (so two arms with equal gains agree item by item)."""
    rng = np.random.default_rng(rng_seed)
    out = {}
    for s in range(SEEDS):
        k = max(0, int(round((gain_pts + rng.normal(0, seed_sd_pts)) / 100 * N)))
        v = SFT.copy()
        v[WRONG[:k]] = 1
        out[s] = v
    return out


def cells(**arms):
    return {"sft": {SHARED: SFT}, **{k.replace("__", ":"): v for k, v in arms.items()}}


def test_an_ordering_that_the_data_show_holds():
    c = cells(table3__entropy=arm(8), table3__random=arm(4), table3__accuracy=arm(0))
    (b,) = claim_rows(c, None, 0, claims=[CLAIMS[1]])
    assert b["verdict"] == HOLDS and [r["verdict"] for r in b["links"]] == [HOLDS, HOLDS]
    assert b["links"][0]["diff"] == pytest.approx(4.0, abs=0.1) and b["links"][0]["seeds"] == SEEDS


def test_equal_arms_refute_a_claimed_gain_and_a_reversal_refutes_too():
    c = cells(table4__answer=arm(3), table4__mix=arm(3), table4__sentence=arm(6))
    (claim,) = claim_rows(c, None, 0, claims=[CLAIMS[2]])
    assert [r["verdict"] for r in claim["links"]] == [REFUTED, REFUTED]  # answer = mix; mix < sentence
    assert claim["verdict"] == REFUTED


def test_noisy_seeds_leave_a_claim_inconclusive():
    c = cells(
        table5__low=arm(4, seed_sd_pts=6, rng_seed=2),
        table5__mid=arm(2, seed_sd_pts=6, rng_seed=3),
        table5__high=arm(0),
    )
    (d,) = claim_rows(c, None, 0, claims=[CLAIMS[3]])
    assert d["links"][0]["verdict"] == INCONCLUSIVE and d["verdict"] in (INCONCLUSIVE, REFUTED)
    assert d["links"][0]["mde"] > 2.0  # the design could not detect 2 points here


def test_table2_chain_ends_at_the_shared_sft_model_and_fig4_is_non_inferiority():
    c = cells(
        table2__selection_sort=arm(6),
        table2__selection=arm(4),
        table2__full_rl=arm(2),
        fig4__0_15=arm(3),
        fig4__1_0=arm(4),
    )
    c["fig4:0.15"], c["fig4:1.0"] = c.pop("fig4:0_15"), c.pop("fig4:1_0")
    rows = {r["claim"]: r for r in claim_rows(c, -0.2, 1000)}
    assert rows["e"]["verdict"] == HOLDS and rows["e"]["links"][-1]["link"] == "table2:full_rl > sft"
    assert rows["f"]["verdict"] == HOLDS  # 1 point worse, within the 2-point margin
    assert rows["a"]["verdict"] == HOLDS
    assert rows["b"]["verdict"] == INCONCLUSIVE and rows["b"]["links"][0]["note"] == "arm missing"
    c["fig4:0.15"] = arm(0)
    assert claim_rows(c, 0.0, 1000)[-1]["verdict"] == REFUTED  # 4 points worse: the 15% does not match 100%
    assert claim_rows(c, 0.0, 1000)[0]["verdict"] == REFUTED  # rho = 0 rules out rho <= -0.1


def test_beyond_rows_and_the_markdown():
    c = cells(table4__answer=arm(3), table4__answer_debiased=arm(6), online__static=arm(3))
    rows = beyond_rows(c)
    assert [r["link"] for r in rows] == [BEYOND[0].text]  # only arms that ran
    assert rows[0]["verdict"] == HOLDS
    text = verdict_markdown({"fmt": claim_rows(c, None, 0)}, {"fmt": rows}, 2.0)
    assert "| fmt | beyond the paper | table4:answer_debiased > table4:answer |" in text
    assert "**(a)**" in text and "no probe table or no finite answer entropy" in text
    assert link_row(c, Link("table4:answer", "nope"), 2.0)["verdict"] == INCONCLUSIVE


def test_each_method_against_egt_in_the_tables_row_order():
    c = cells(
        methods__egt=arm(3),
        methods__zero_variance=arm(3),  # equal: a gain of 2 points is ruled out
        methods__pass_rate=arm(8),  # 5 points better
        methods__my_own=arm(3, seed_sd_pts=6, rng_seed=4),  # not in the table's rows: last; noisy
        table3__random=arm(1),  # not a method arm
    )
    rows = method_rows(c)
    assert [r["link"] for r in rows] == [
        "methods:pass_rate > methods:egt",
        "methods:zero_variance > methods:egt",
        "methods:my_own > methods:egt",
    ]
    assert [r["verdict"] for r in rows[:2]] == [HOLDS, REFUTED] and rows[2]["verdict"] == INCONCLUSIVE
    assert rows[0]["diff"] == pytest.approx(5.0, abs=0.1) and rows[0]["seeds"] == SEEDS
    text = methods_markdown({"fmt": rows}, 2.0)
    assert "| fmt | pass_rate | +5.0" in text and "| refuted |" in text
    assert method_rows(cells(methods__pass_rate=arm(8)))[0]["note"] == "arm missing"  # no EGT arm


# ---- a hand-made sweep: job.json files and the eval artifacts' predictions ----------------------------------


def _job(
    root: Path,
    art: Path,
    name: str,
    overrides: list[str],
    seed: int,
    rl: np.ndarray,
    sft: np.ndarray,
    probe: pd.DataFrame | None = None,
) -> None:
    d = root / name
    d.mkdir(parents=True)
    metrics = []
    for model, vec in (("sft", sft), ("rl", rl)):
        key = f"{model}{abs(hash((name, model))) % 10**8}" if model == "rl" else "sftkey"
        (art / "eval" / key).mkdir(parents=True, exist_ok=True)
        with open(art / "eval" / key / "predictions.jsonl", "w") as fh:
            for i, c in enumerate(vec):
                fh.write(
                    json.dumps(
                        {"id": f"b{i:04d}", "view": "official", "label": 1, "pred": 1 if c else (None if i % 2 else 2)}
                    )
                    + "\n"
                )
        metrics.append(
            {
                "model": model,
                "benchmark": "synthetic",
                "key": key,
                "columns": [["overall", "Overall"]],
                "metrics": {"overall": float(np.mean(vec))},
            }
        )
    files = {}
    if probe is not None:
        probe.to_parquet(d / "probe.parquet")
        files["probe"] = "probe.parquet"
    (d / "job.json").write_text(
        json.dumps(
            {
                "version": 1,
                "status": "completed",
                "overrides": overrides,
                "choices": {},
                "params": {"rl.seed": seed},
                "metrics": metrics,
                "files": files,
                "stages": {},
                "seconds": 1.0,
            }
        )
    )


def _probe(n=400):
    rng = np.random.default_rng(5)
    flipped = rng.uniform(size=n) < 0.3
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "answer_entropy": rng.uniform(size=n) + 0.3 * flipped,
            "sentence_entropy": rng.uniform(size=n) + 1.0 * flipped,
            "correct_score": (~flipped).astype(float),
            "flipped": flipped,
            "ambiguous": False,
        }
    )


def test_the_written_reproduction_of_a_hand_made_sweep(tmp_path):
    root, art, n = tmp_path / "fmt", tmp_path / "art", 300
    sft = SFT[:n]
    for s in range(4):
        for value, gain in (("random", 0), ("accuracy", 0), ("entropy", 40)):
            v = sft.copy()
            v[np.flatnonzero(sft == 0)[: gain + s]] = 1
            _job(
                root,
                art,
                f"t3_{value}_{s}",
                [f"selection={value}", f"rl.seed={s}"],
                s,
                v,
                sft,
                _probe() if value == "entropy" else None,
            )
        for value in ("answer", "sentence"):
            _job(root, art, f"t4_{value}_{s}", [f"entropy={value}", f"rl.seed={s}"], s, sft, sft, _probe())
    arms, ids = load_cells(load_jobs(root), art)
    assert len(ids) == n and set(arms) == {
        "sft",
        "table3:random",
        "table3:accuracy",
        "table3:entropy",
        "table4:answer",
        "table4:sentence",
    }
    assert arms["table3:entropy"][2].sum() == sft.sum() + 42  # the parse failures (pred None) count wrong
    md = ci_tables_markdown(arms)
    assert "**table3** (reference: entropy)" in md and "| entropy | 4 |" in md and "reference |" in md
    stats = {"alpha": 0.05, "margin": 2.0, "rho_margin": 0.1, "auroc_margin": 0.05}
    claims, beyond, detect, sft_items, probe = write_format("fmt", root, art, tmp_path / "out", stats, ["sentence"])
    assert len(sft_items) == n and sum(sft_items.values()) == sft.sum() and len(probe) == 400
    b = next(c for c in claims if c["claim"] == "b")
    assert [r["verdict"] for r in b["links"]] == [HOLDS, REFUTED]  # entropy > random; random = accuracy
    assert next(c for c in claims if c["claim"] == "a")["verdict"] == HOLDS  # correct falls with entropy
    assert (tmp_path / "out" / "fmt" / "tables_ci.md").is_file()
    assert (tmp_path / "out" / "fmt" / "fig2_ci.png").is_file()
    by = {r["score"]: r for r in detect}
    assert by["sentence"]["auroc"] > by["answer"]["auroc"] and by["sentence"]["verdict"] == HOLDS


def test_write_reproduction_writes_the_verdict_file(tmp_path):
    from egt.campaign.reproduce import read_protocol

    proto = tmp_path / "protocol.md"
    proto.write_text(
        "```yaml\n# egt-protocol\nseeds: 3\nseeds_tier2: 1\ncalibration_seeds: [100]\n"
        "formats: {fmt_a: []}\ncommon: []\nsweeps: [{name: table2, experiment: table2}]\n"
        "gates: {}\ntimings: {}\n"
        "stats: {alpha: 0.05, power: 0.8, margin: 2.0, rho_margin: 0.1, auroc_margin: 0.05}\n```\n"
    )
    sweeps, art, sft = tmp_path / "sw", tmp_path / "art", SFT[:200]
    for s in range(3):
        for value, gain in (("full_rl", 10), ("selection", 5), ("selection_sort", 5)):
            v = sft.copy()
            v[np.flatnonzero(sft == 0)[:gain]] = 1
            _job(sweeps / "fmt_a", art, f"{value}_{s}", [f"ablation={value}", f"rl.seed={s}"], s, v, sft)
    path = write_reproduction(read_protocol(proto), sweeps, art, tmp_path / "out")
    text = path.read_text()
    assert "sha256" in text and "| fmt_a | **(e)**" in text and "table2:full_rl > sft" in text
    assert "(needs the SFT judges of two formats)" in text
    assert (tmp_path / "out" / "fmt_a" / "tables_ci.md").is_file()


def test_detection_needs_the_reference_probe(tmp_path):
    assert detection_rows([], ["sentence"]) == []


# ---- an interim report, the demo default's rules and the time per sweep ---------------------------------------


def test_an_interim_report_says_not_run_yet_where_a_finished_run_says_inconclusive():
    from egt.campaign.verdict import PENDING

    c = cells(table2__full_rl=arm(-4))  # RL made the judge worse: the last link of (e) is refuted already
    final = {r["claim"]: r for r in claim_rows(c, None, 0)}
    interim = {r["claim"]: r for r in claim_rows(c, None, 0, interim=True)}
    assert final["b"]["verdict"] == INCONCLUSIVE and final["b"]["links"][0]["note"] == "arm missing"
    assert interim["b"]["verdict"] == PENDING and [r["verdict"] for r in interim["b"]["links"]] == [PENDING] * 2
    assert interim["e"]["verdict"] == REFUTED  # a refuted link refutes the claim whatever is still to run
    assert [r["verdict"] for r in interim["e"]["links"]] == [PENDING, PENDING, REFUTED]
    c = cells(table4__answer_debiased=arm(6))
    assert beyond_rows(c, interim=True)[0]["verdict"] == PENDING  # its reference arm has not run


def _probe_with(auroc_shift: float, seed: int) -> pd.DataFrame:
    t = _probe()
    rng = np.random.default_rng(seed)
    t["answer_entropy"] = rng.uniform(size=len(t)) + auroc_shift * t["flipped"]
    return t


def test_the_demo_default_follows_the_protocols_three_rules():
    from egt.campaign.reproduction import default_choice

    ids = [f"b{i}" for i in range(N)]
    better = SFT.copy()
    better[WRONG[:200]] = 1  # +10 points on the same items
    sft = {"fmt_a": dict(zip(ids, SFT.tolist())), "fmt_b": dict(zip(ids, better.tolist()))}
    probes = {"fmt_a": _probe_with(0.0, 1), "fmt_b": _probe_with(0.0, 2)}
    chosen, text = default_choice(sft, probes, "fmt_a")
    assert chosen == "fmt_b" and "(rule 1)" in text
    sft["fmt_b"] = dict(zip(ids, SFT.tolist()))  # equal judges: rule 1 cannot decide
    probes["fmt_a"] = _probe_with(1.0, 1)  # fmt_a's answer entropy separates flipped labels, fmt_b's does not
    chosen, text = default_choice(sft, probes, "fmt_b")
    assert chosen == "fmt_a" and "(rule 2)" in text and "rule 1 does not decide" in text
    probes["fmt_a"] = _probe_with(0.0, 3)
    chosen, text = default_choice(sft, probes, "fmt_b")
    assert chosen == "fmt_b" and "(rule 3)" in text and "rule 2 does not decide" in text
    assert default_choice({"fmt_a": sft["fmt_a"]}, probes, "fmt_a")[0] is None


def test_time_per_sweep_sums_the_computed_stages_of_every_logged_run(tmp_path):
    from egt.campaign.reproduction import sweep_seconds

    table = "stage    state     seconds  headline\n{}\n"
    job = tmp_path / "sw" / "fmt_a" / "table2" / "0"
    job.mkdir(parents=True)
    # killed once after the table of a first run, then rerun: the log holds both tables
    (job / "train.log").write_text(
        table.format("rl       computed    100.0  x\neval     computed     20.5  y")
        + "[...] resuming\n"
        + table.format("rl       reused        0.1  x")
    )
    running = tmp_path / "sw" / "fmt_a" / "table2" / "1"
    running.mkdir()
    (running / "train.log").write_text("[rl] 10/111 batches\n")  # under way: no table yet, not counted
    (tmp_path / "sw" / "fmt_a" / "upstream").mkdir()
    (tmp_path / "sw" / "fmt_a" / "upstream" / "train.log").write_text(table.format("sft      computed   3600.0  z"))
    text = sweep_seconds(tmp_path / "sw", ["fmt_a"])
    assert "| fmt_a | upstream | 1 | 3,600 | 3,600 |" in text and "| fmt_a | table2 | 1 | 120 | 120 |" in text
    assert "Total: 1.03 process hours" in text


def test_the_ci_tables_say_what_each_arm_trained_on(tmp_path):
    from egt.campaign.paired import training_sets

    root, art, sft = tmp_path / "fmt", tmp_path / "art", SFT[:100]
    for s, (flipped, steps) in enumerate(((39, 76), (45, 76))):
        _job(root, art, f"sel{s}", ["+ablation=selection", f"rl.seed={s}"], s, sft, sft)
        rec = json.loads((root / f"sel{s}" / "job.json").read_text())
        rec["stages"] = {
            "select": {
                "summary": {
                    "n_selected": 150,
                    "flipped_kept": flipped,
                    "ambiguous_kept": 30,
                    "flipped_rate": 0.313,
                    "ambiguous_rate": 0.212,
                }
            },  # the pool's
            "rl": {"summary": {"optimizer_steps": steps}},
        }
        (root / f"sel{s}" / "job.json").write_text(json.dumps(rec))
    _job(root, art, "full0", ["+ablation=full_rl", "rl.seed=0"], 0, sft, sft)  # recorded no stages
    jobs = load_jobs(root)
    sets = training_sets(jobs)
    assert sets == {
        "table2:selection": {"n": 150.0, "flipped": pytest.approx(0.28), "ambiguous": pytest.approx(0.2), "steps": 76.0}
    }  # (39 + 45) / 2 / 150 flipped, 30 / 150 ambiguous
    md = ci_tables_markdown(load_cells(jobs, art)[0], sets=sets)
    assert "| 150, 28.0, 20.0 | 76 |" in md and "| full_rl | 1 |" in md
