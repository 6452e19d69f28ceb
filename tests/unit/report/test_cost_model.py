"""The recipe's cost model (egt.report.cost_model): hand-worked hours, and docs/scale.md's table is its output."""

import json
from pathlib import Path

import pytest

from egt.report.cost_model import cost_table, main, stage_hours

ROOT = Path(__file__).resolve().parents[3]
RECIPE = {
    "sft_samples": 100,
    "sft_tokens": 36,
    "probe_samples": 10,
    "prompt_tokens": 30,
    "probe_new_tokens": 6,
    "rl_prompts": 4,
    "rl_group": 3,
    "rl_new_tokens": {"value": 10, "kind": "estimated"},
}


def test_hours_per_stage_by_hand():
    stack = {
        "sft_tokens_per_s": {"value": 2, "kind": "measured"},
        "decode_tokens_per_s": {"value": 1, "kind": "measured"},
        "forward_tokens_per_s": {"value": 4, "kind": "published"},
        "grad_tokens_per_s": {"value": 2, "kind": "goal"},
        "nograd_passes": 2,
    }
    h = stage_hours(RECIPE, stack, gpus=2)
    assert h["sft"] == (pytest.approx(100 * 36 / (2 * 2) / 3600), "measured")  # 900 s
    assert h["probe"] == (pytest.approx((10 * 6 / 2 + 10 * 30 / 8) / 3600), "measured")  # 30 + 37.5 s
    # n = 12 sequences; every row whole: T = 12 * (30 + 10) = 480 tokens a pass
    rl_s = 12 * 10 / 2 + 2 * 480 / 8 + 480 / 4  # decode 60 + two no-grad passes 120 + gradient 120
    assert h["rl"] == (pytest.approx(rl_s / 3600), "estimated")  # the gradient rate is a goal
    shared = stage_hours(RECIPE, {**stack, "shared_prompt": True}, gpus=2)["rl"][0] * 3600
    t = 4 * 30 + 12 * 10  # each prompt once per group: 240 tokens a pass
    assert shared == pytest.approx(60 + 2 * t / 8 + t / 4)
    nograd_only = stage_hours(RECIPE, {**stack, "shared_prompt": True, "shared_prompt_grad": False}, gpus=2)
    assert nograd_only["rl"][0] * 3600 == pytest.approx(60 + 2 * t / 8 + 480 / 4)  # the gradient pass whole


def test_an_end_to_end_rl_rate_and_missing_stages():
    h = stage_hours(RECIPE, {"rl_tokens_per_s": {"value": 3, "kind": "published"}}, gpus=1)
    assert h["sft"] is None and h["probe"] is None
    assert h["rl"] == (pytest.approx(12 * 40 / 3 / 3600), "measured")


def test_the_table_in_docs_scale_is_the_models_output(capsys):
    rates = json.loads((ROOT / "docs" / "gpu" / "rates.json").read_text(encoding="utf-8"))
    table = cost_table(rates)
    assert table in (ROOT / "docs" / "scale.md").read_text(encoding="utf-8"), (
        "docs/scale.md's cost table is stale: paste `python -m egt.report.cost_model docs/gpu/rates.json`"
    )
    assert main([str(ROOT / "docs" / "gpu" / "rates.json")]) == 0
    assert capsys.readouterr().out.strip() == table.strip()
