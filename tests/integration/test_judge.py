"""A judge the real CLI trained (model=tiny) as a product: its judge card and model card, Judge.compare against
the eval stage's predictions, and ``python -m egt.judge rank``."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from cli_runner import QUICK, REPO, cli, done

from egt.judge import Judge
from egt.judge.card import read_card
from egt.utils.atomic import load_saved_dataset

# enough steps for the tiny model to learn the answer format (measured: 12 epochs at 3e-3 → 29 of 32 parsed)
TRAIN = ["sft.epochs=12", "sft.lr=3e-3", "sft.eval_n=0", "data.world.n_bench=8", "eval.order=both"]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    art = tmp_path_factory.mktemp("judge-artifacts")
    cli(art, *QUICK, *TRAIN, "stages=[data,distill,sft,eval]")
    return art


def test_saved_judge_has_its_cards_and_the_eval_numbers(art):
    model = done(art, "sft")[0] / "model"
    card = read_card(model)
    assert card["template"]["name"] == "minimal" and card["generation"]["max_new_tokens"] == 48
    (ev,) = done(art, "eval")
    m = json.loads((ev / "metrics.json").read_text())["metrics"]
    row = re.search(r"^\| synthetic \| 8 \| both \| (.*) \|$", (model / "README.md").read_text(), re.M)
    official, overall, debiased, consistency, failures = row.group(1).split(" | ")
    assert overall == f"{100 * m['overall']:.2f}" and debiased == f"{100 * m['order/debiased/overall']:.2f}"
    assert consistency == f"{100 * m['order/position_consistency']:.2f}"


def test_compare_equals_the_eval_stages_prediction(art):
    model = done(art, "sft")[0] / "model"
    (ev,) = done(art, "eval")
    preds = {r["key"]: r for r in map(json.loads, (ev / "predictions.jsonl").read_text().splitlines())}
    bench = load_saved_dataset(done(art, "data")[0] / "dataset")["bench"]
    items = [{k: bench[i][k] for k in ("id", "images", "query", "response_1", "response_2")} for i in range(4)]
    verdicts = Judge.from_pretrained(model).compare_many(items, order="both")
    for it, v in zip(items, verdicts):
        official, swapped = preds[f"{it['id']}|official"], preds[f"{it['id']}|swapped"]
        assert (v.output, v.verdict) == (official["outputs"][0], official["pred"])
        assert v.swapped_verdict == (None if swapped["pred"] is None else 3 - swapped["pred"])
    assert any(v.verdict is not None for v in verdicts)  # the trained judge answers: the test can fail
    assert all(v.probability is None or 0 < v.probability < 1 for v in verdicts)


def test_rank_cli_states_its_calls_and_resumes(art, tmp_path):
    model = done(art, "sft")[0] / "model"
    bench = load_saved_dataset(done(art, "data")[0] / "dataset")["bench"]
    rows = []
    for i in range(2):
        bench[i]["images"][0].save(tmp_path / f"{i}.png")
        cands = [bench[i]["response_1"], bench[i]["response_2"], "I cannot tell."]
        rows.append({"id": bench[i]["id"], "images": [f"{i}.png"], "question": bench[i]["query"], "candidates": cands})
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "egt.judge", "rank", "--model", str(model), "--data", str(tmp_path / "c.jsonl")]
    cmd += ["--out", str(tmp_path / "r.jsonl"), "--scheme", "round_robin"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout.strip().splitlines()[-1])["calls"] == 12  # 2 prompts × 3·2
    out = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["calls"] for r in out] == [r["calls_stated"] for r in out] == [6, 6]
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)  # everything journalled: no new call
    assert again.returncode == 0 and "resuming, 2 of 2" in again.stderr
    assert [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()] == out
