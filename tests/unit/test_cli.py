"""egt.cli.headline_metric: the number a sweep optimises, defined once per stage (egt.stages.HEADLINES)."""
from egt.cli import headline_metric
from egt.stages import HEADLINES, STAGES


def test_headline_stages_are_stages():
    assert set(HEADLINES) <= set(STAGES) and set(HEADLINES) == {"sft", "rl", "eval"}


def test_the_last_stage_that_defines_a_headline_gives_it():
    results = {"sft": {"summary": {"headline": 0.8}}, "probe": {"summary": {}},
               "rl": {"summary": {"headline": 0.85, "reward_last": 1.4}}}
    assert headline_metric(results) == 0.85
    results["eval"] = {"summary": {"headline": 0.9}}
    assert headline_metric(results) == 0.9
    results["select"] = {"summary": {"headline": 123.0}}  # a stage without a headline is not read
    assert headline_metric(results) == 0.9


def test_a_stage_without_its_headline_gives_none_not_an_earlier_stages():
    # rl.eval_n=0: the RL run has no bench accuracy; SFT's must not be passed off as RL's
    assert headline_metric({"sft": {"summary": {"headline": 0.8}}, "rl": {"summary": {"reward_last": 1.2}}}) is None
    assert headline_metric({"data": {"summary": {}}}) is None
