"""UnifiedReward-Think's reward rules (egt.rl.rules; grpo.py at CodeGoat24/UnifiedReward@ff6f520) on
hand-written completions, next to egt's strict rules where they differ."""

import re

import pytest

from egt.rl.rules import StrictAccuracy, StrictFormat, UnifiedRewardThinkAccuracy, UnifiedRewardThinkFormat

# their format_reward, verbatim: the reference the port must equal
THEIRS = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)

FORMAT = [
    ("<think>a</think><answer>2</answer>", True, True),
    ("<think>a</think>\n\n  <answer>2</answer>", True, True),  # whitespace between the blocks: both allow it
    ("<think>a</think>\t<answer>2</answer>\n", True, True),
    ("<think>a</think>so<answer>2</answer>", False, False),  # text between the blocks
    ("<think>a</think></think><answer>2</answer>", True, False),  # a repeated closing tag
    ("<think>a</think><answer>2</answer><answer>1</answer>", True, False),  # a second answer
    ("<think><think>a</think><answer>2</answer>", True, False),  # a repeated opening tag
    ("<think>a</think><answer>2</answer> trailing", True, False),  # anchored at the start only
    ("  <think>a</think><answer>2</answer>", False, True),  # leading whitespace: theirs is not stripped
    ("Sure. <think>a</think><answer>2</answer>", False, False),
    ("<think>a</think>", False, False),
    ("", False, False),
]


@pytest.mark.parametrize("text,theirs,strict", FORMAT)
def test_format_rule_is_their_regex(text, theirs, strict):
    assert UnifiedRewardThinkFormat().ok(text) is theirs
    assert (THEIRS.match(text) is not None) is theirs
    assert StrictFormat().ok(text) is strict


@pytest.mark.parametrize(
    "text,answer",
    [
        ("<think>a</think><answer>2</answer>", 2),
        ("<think>a</think><answer> 1 \n</answer>", 1),  # stripped
        ("<answer>2</answer><answer>1</answer>", 2),  # the first answer
        ("2", 2),  # no <answer>: the whole stripped output
        ("  1  ", 1),
        ("<answer>Response 2</answer>", None),  # exact match: a sentence is not "2"
        ("<answer>2.</answer>", None),
        ("<answer>12</answer>", None),
        ("<answer>2", None),  # unclosed: the whole text, not "2"
        ("", None),
    ],
)
def test_accuracy_is_an_exact_match_of_the_first_answer(text, answer):
    assert UnifiedRewardThinkAccuracy().answer(text) == answer
    label = answer or 1
    assert UnifiedRewardThinkAccuracy()([{}], [text], label=[label]) == [float(answer == label)]


def test_where_the_accuracy_rules_differ():
    texts = ["<answer>2</answer><answer>1</answer>", "2", "<think>x</think><answer>2</answer>"]
    assert UnifiedRewardThinkAccuracy()([{}] * 3, texts, label=[2] * 3) == [1.0, 1.0, 1.0]
    assert StrictAccuracy()([{}] * 3, texts, label=[2] * 3) == [0.0, 0.0, 1.0]
