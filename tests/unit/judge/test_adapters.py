"""The TRL and verl reward adapters, called exactly as the frameworks call them."""

from __future__ import annotations

import pytest
from PIL import Image

from egt.judge import Judge
from egt.judge.adapters import TRLJudgeReward, verl_compute_score
from judge_fakes import Known

IMG = Image.new("RGB", (56, 56), "blue")


def test_reference_mode_scores_against_the_reference_column():
    judge = Known({"good": 0.9, "bad": 0.1, "ref": 0.5})
    fn = TRLJudgeReward(judge, reference_column="solution", image_column="images")
    prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]] * 3
    completions = [[{"role": "assistant", "content": c}] for c in ("good", "bad", "")]
    out = fn(  # as trl/trainer/grpo_trainer.py _calculate_rewards calls it
        prompts=prompts,
        completions=completions,
        completion_ids=[[1], [2], []],
        images=[[IMG]] * 3,
        solution=["ref"] * 3,
        trainer_state=None,
        log_extra=lambda *a: None,
        log_metric=lambda *a: None,
    )
    assert out == [1.0, 0.0, 0.0] and judge.calls == 4  # the empty completion costs no call
    assert fn.__name__ == "egt_judge_reference"


def test_group_mode_is_the_round_robin_win_rate():
    judge = Known({"a": 0.1, "b": 0.5, "c": 0.9, "x": 0.2, "y": 0.8})
    fn = TRLJudgeReward(judge, mode="group")
    out = fn(["p1"] * 3 + ["p2"] * 2, ["a", "b", "c", "x", "y"], image=[IMG] * 5)
    assert out == [0.0, 0.5, 1.0, 0.0, 1.0] and judge.calls == 3 * 2 + 1 * 2


def test_group_mode_plays_no_match_for_an_empty_completion():
    judge = Known({"a": 0.1, "c": 0.9})
    out = TRLJudgeReward(judge, mode="group")(["p"] * 3, ["a", "  ", "c"], image=[IMG] * 3)
    assert out == [0.5, 0.0, 1.0] and judge.calls == 2  # a and c beat the empty one; c beats a; one match


def test_missing_columns_are_named():
    fn = TRLJudgeReward(Known({}), reference_column="solution")
    with pytest.raises(KeyError, match="no image column 'image'.*columns: \\['solution'\\]"):
        fn(["q"], ["a"], solution=["r"])
    with pytest.raises(KeyError, match="no reference column 'solution'"):
        fn(["q"], ["a"], image=[IMG])


def test_on_the_tiny_judge_trl_and_verl_agree_with_compare(tiny_model_dir):
    judge = Judge.from_pretrained(tiny_model_dir, template="minimal", max_new_tokens=8)
    v = judge.compare([IMG], "How many?", "Two.", "Three.", order="both")
    picks = [d for d in (v.verdict, v.swapped_verdict) if d is not None]
    expect = sum(d == 1 for d in picks) / len(picks) if picks else None
    trl = TRLJudgeReward(judge)(["How many?"], ["Two."], image=[IMG], solution=["Three."], trainer_state=None)
    verl = verl_compute_score(judge)("world", "Two.", "Three.", {"images": [IMG], "question": "How many?"})
    assert trl == [expect] and verl == (0.0 if expect is None else expect)
