"""The composite reward table (docs/design.md §5.1) and the judges' parsing."""

import pytest

from egt.rl.judges.base import JudgeItem, LogicJudge, consistency_prompt
from egt.rl.judges.rule import RuleJudge, conclusion
from egt.rl.reward import CompositeReward, accuracy_reward, format_reward, reasoning_of
from egt.rl.rules import StrictAccuracy, StrictFormat

SUPPORTS_2 = "Response 1 says 3 circles, which is wrong. Response 2 says 2 circles, which is right."
SUPPORTS_1 = "Response 1 says 2 circles, which is right. Response 2 says 3 circles, which is wrong."
UNDECIDED = "Both responses are about circles."


class FixedJudge(LogicJudge):
    def __init__(self, verdict):
        self.verdict, self.calls = verdict, 0

    def verdicts(self, items):
        self.calls += len(items)
        return [self.verdict] * len(items)


class BrokenJudge(LogicJudge):
    name = "broken"

    def verdicts(self, items):
        raise ConnectionError("judge down")


def out(reasoning, answer, well_formed=True):
    body = f"<think>{reasoning}</think><answer>{answer}</answer>"
    return body if well_formed else body + " trailing text"


# (completion, label, R_acc, R_logic, R_format, R)  with α = β = 0.5, egt's strict rules
# (R1-Reward's rules: tests/unit/rl/test_fidelity.py)
TABLE = [
    (out(SUPPORTS_2, 2), 2, 1, 1, 1, 2.0),  # right, supported, well-formed
    (out(SUPPORTS_2, 2, False), 2, 1, 1, 0, 1.5),  # right, supported, bad format
    (out(UNDECIDED, 2), 2, 1, 0, 1, 1.5),  # right, undecided reasoning
    (out(UNDECIDED, 2, False), 2, 1, 0, 0, 1.0),
    (out(SUPPORTS_1, 2), 2, 1, -1, 1, 1.0),  # right answer, reasoning says the other one
    (out(SUPPORTS_1, 2, False), 2, 1, -1, 0, 0.5),
    (out(SUPPORTS_2, 2), 1, 0, 0, 1, 0.5),  # wrong: the judge is not asked
    (out(SUPPORTS_2, 2, False), 1, 0, 0, 0, 0.0),
    ("<think>x</think><answer>3</answer>", 1, 0, 0, 1, 0.5),  # parse failure = 0, format still ok
    ("<think>x</think>", 2, 0, 0, 0, 0.0),  # no answer at all
    ("<answer>1</answer><answer>2</answer>", 1, 0, 0, 0, 0.0),  # two answers: never a guess
    ("", 1, 0, 0, 0, 0.0),
]


@pytest.mark.parametrize("completion,label,acc,logic,fmt,total", TABLE)
def test_reward_table(completion, label, acc, logic, fmt, total):
    strict = CompositeReward(alpha=0.5, beta=0.5, accuracy=StrictAccuracy(), format=StrictFormat())
    terms = strict.terms([{"label": label}], [completion])
    assert (terms.acc[0], terms.logic[0], terms.format[0], terms.reward[0]) == (acc, logic, fmt, total)


def test_judge_asked_only_when_correct_and_counts():
    judge = FixedJudge(1)
    r = CompositeReward(judge=judge)
    terms = r.terms([{"label": 1}, {"label": 2}, {"label": 1}], [out("a", 1), out("a", 1), "<answer>x</answer>"])
    assert judge.calls == 1 and terms.logic == [1.0, 0.0, 0.0]
    assert terms.verdicts == {"support": 1, "not_asked": 2}


def test_broken_judge_is_counted_and_gives_zero():
    terms = CompositeReward(judge=BrokenJudge()).terms([{"label": 2}], [out(SUPPORTS_2, 2)])
    assert terms.logic == [0.0] and terms.reward == [1.5] and terms.verdicts["error"] == 1
    terms = CompositeReward(judge=FixedJudge(None)).terms([{"label": 2}], [out(SUPPORTS_2, 2)])
    assert terms.verdicts["error"] == 1 and terms.reward == [1.5]


def test_reward_contract_and_label_from_kwargs():
    r = CompositeReward()
    assert r([{}, {}], [out(SUPPORTS_2, 2), out(SUPPORTS_2, 2)], label=[2, 1]) == [2.0, 0.5]
    assert accuracy_reward([{}], ["<answer>1</answer>"], label=[1]) == [1.0]
    assert format_reward([{}], ["<answer>1</answer>"]) == [0.0]


def test_judge_never_sees_the_label():
    seen = []

    class Spy(LogicJudge):
        def verdicts(self, items):
            seen.extend(items)
            return [0] * len(items)

    CompositeReward(judge=Spy()).terms([{"label": 2, "id": "a"}], [out("r", 2)])
    assert seen[0].sample == {"id": "a"} and seen[0].answer == 2 and seen[0].reasoning == "r"


@pytest.mark.parametrize(
    "text,expected",
    [
        (SUPPORTS_2, 2),
        (SUPPORTS_1, 1),
        (SUPPORTS_1 + " Response 1 is better.", 1),
        ("The image shows 2 circles. Response 2 says 2 circles, which is right.", 2),  # only one judged
        ("Response 1 says yes, which is wrong.", 2),  # the other one, then
        ("Response 1 says red, which is right. Response 2 says red, which is right. Both responses are right.", None),
        ("Response 1 says red, which is wrong. Response 2 says blue, which is wrong. Both responses are wrong.", None),
        ("Response 1 is right and Response 2 is wrong", 1),
        ("Response 2 is not correct. Response 1 is accurate.", 1),
        ("Overall, I prefer Response 2.", 2),
        ("Response 1 is clearly worse.", 2),
        ("Response 2 is the better one", 2),
        (
            "Response 1 says 3, which is wrong. Response 2 says 2, which is right. Response 1 is better.",
            1,
        ),  # explicit wins
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_rule_judge_conclusions(text, expected):
    assert conclusion(text) == expected


def test_rule_judge_verdicts():
    items = [JudgeItem({}, SUPPORTS_2, 2), JudgeItem({}, SUPPORTS_2, 1), JudgeItem({}, UNDECIDED, 1)]
    assert RuleJudge().verdicts(items) == [1, -1, 0]


def test_reasoning_and_consistency_prompt():
    assert reasoning_of("<think> a b </think><answer>1</answer>") == "a b"
    assert reasoning_of("no tags <answer>1</answer>") == "no tags"
    p = consistency_prompt(JudgeItem({}, "one. two. three. four.", 1), last_lines=2)
    assert "three. four." in p and "one." not in p and "Response 1 is better." in p


def test_hf_judge_on_the_tiny_model(tiny_model_dir):
    from egt.rl.judges.hf import HFJudge

    judge = HFJudge(str(tiny_model_dir), device="cpu", max_new_tokens=3)
    items = [JudgeItem({}, SUPPORTS_2, 2), JudgeItem({}, UNDECIDED, 1), JudgeItem({}, SUPPORTS_1, 1)]
    out = judge.verdicts(items)
    assert len(out) == 3 and set(out) <= {-1, 0, 1}
    terms = CompositeReward(judge=judge).terms([{"label": 2}], [out_(SUPPORTS_2, 2)])
    assert terms.verdicts["not_asked"] == 0 and sum(terms.verdicts.values()) == 1


out_ = out
