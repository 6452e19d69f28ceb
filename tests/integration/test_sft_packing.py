"""sft.packing=true through the real CLI on the tiny model: it trains, and its loss at step 1 (before any
optimizer step) is the padded run's to fp32 summation order; the summary counts the tokens."""

import json

import pytest

from cli_runner import QUICK, cli, done

RUN = [*QUICK, "stages=[data,distill,sft]", "sft.max_steps=2", "sft.eval_n=0", "sft.val_fraction=0"]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


def _run(art, *over):
    before = set(done(art, "sft"))
    cli(art, *RUN, *over)
    (path,) = set(done(art, "sft")) - before
    curve = json.loads((path / "curve.json").read_text())["train/loss"]
    return curve, json.loads((path / "_SUCCESS.json").read_text())["summary"]


def test_packed_sft_trains_and_step_one_loss_is_the_padded_one(art):
    padded, s_pad = _run(art)
    packed, s_pack = _run(art, "sft.packing=true")  # data and distill reused: the same samples, same order
    assert len(packed) == len(padded) == 2 and s_pack["steps"] == 2 and s_pack["packing"] is True
    # step 1: the same weights, the same 8 samples; only fp32 summation order differs (~1e-7 relative per op)
    assert packed[0][1] == pytest.approx(padded[0][1], rel=1e-5)
    # step 2 follows one AdamW step from gradients equal to ~1e-6: close, not bit-equal (machines differ)
    assert packed[1][1] == pytest.approx(padded[1][1], rel=1e-3)
    assert s_pack["train_tokens"] == s_pad["train_tokens"] > 0
    assert s_pack["train_padded_tokens"] == s_pack["train_tokens"] < s_pad["train_padded_tokens"]
    assert s_pack["tokens_per_second"] > 0


def test_packing_under_egt_varlen_is_accepted_and_trains(art):
    """sft.packing with model.attn_implementation=egt_varlen (the GPU path: rows cut into sequences at the position
    resets, any row budget) passes validation; on this CPU egt_varlen is sdpa (one line says so) and trains. The
    varlen path's exactness on packed rows: tests/unit/sft/test_packing.py (reference kernel)."""
    before = set(done(art, "sft"))
    over = ["sft.packing=true", "sft.packing_max_tokens=300", "model.attn_implementation=egt_varlen"]
    out = cli(art, *RUN, *over)
    assert any("egt_varlen" in ln and "using sdpa" in ln for ln in out.splitlines()), out[-3000:]
    (path,) = set(done(art, "sft")) - before
    summary = json.loads((path / "_SUCCESS.json").read_text())["summary"]
    curve = json.loads((path / "curve.json").read_text())["train/loss"]
    assert summary["packing"] is True and summary["steps"] == 2 and len(curve) == 2
    assert all(0 < loss < 100 for _, loss in curve)
