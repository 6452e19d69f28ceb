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
