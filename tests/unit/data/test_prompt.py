"""Judge prompt building and strict parsing (DESIGN §2)."""


import pytest

import egt.data.prompt as prompt
from egt.data.prompt import (
    answer_char_span,
    build_messages,
    build_user_text,
    format_ok,
    format_target,
    locate_answer_token,
    normalise_output,
    parse_answer,
)



def test_short_template_sections_and_length():
    text = build_user_text("Q?", "R one", "R two")
    assert text.index("[Question]\nQ?") < text.index("[Response 1]\nR one") < text.index("[Response 2]\nR two")
    assert "tie is not allowed" in text and "<think>...</think><answer>1 or 2</answer>" in text
    assert 40 <= len(prompt.JUDGE_INSTRUCTION.split()) <= 75


def test_minimal_template_is_one_sentence_then_the_sections():
    text = build_user_text("Q?", "R one", "R two", template="minimal")
    assert text == (prompt.MINIMAL_INSTRUCTION + "\n[Question]\nQ?\n[Response 1]\nR one\n[Response 2]\nR two")
    assert "<think></think>" in text and "<answer></answer>" in text
    assert len(prompt.MINIMAL_INSTRUCTION.split()) <= 20


def test_r1_reward_template_and_unknown_name():
    text = build_user_text("Q?", "a", "b", template="r1_reward")
    assert text.startswith("You are a highly skilled and impartial evaluator")
    assert "[Response 2]:\nb" in text and "A tie is not permitted" in text
    with pytest.raises(ValueError, match="did you mean 'r1_reward'"):
        build_user_text("Q", "a", "b", template="r1reward")


def test_messages_put_images_before_text():
    msgs = build_messages({"images": ["im1", "im2"], "query": "q", "response_1": "a", "response_2": "b"})
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    content = msgs[0]["content"]
    assert content[:2] == [{"type": "image"}, {"type": "image"}]
    assert content[2]["type"] == "text" and "[Question]\nq" in content[2]["text"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>x</think><answer>1</answer>", 1),
        ("<think>x</think><answer>  2\n</answer>", 2),
        ("<think>x</think>", None),                                # no tag
        ("<answer>1</answer><answer>2</answer>", None),            # two tags
        ("<answer>1</answer> and <answer>1</answer>", None),       # two tags, even if equal
        ("<answer>3</answer>", None),                              # not 1/2
        ("<answer>12</answer>", None),
        ("<answer>1", None),                                       # missing closing tag
        ("<answer>Response 1</answer>", None),
        ("The answer is 1.", None),
        ("", None),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<think>r</think><answer>1</answer>", True),
        ("  <think>r\nr</think>\n\n<answer>2</answer>\n", True),
        ("<think>r</think><answer>x</answer>", True),              # format, not content
        ("<answer>1</answer>", False),
        ("prefix <think>r</think><answer>1</answer>", False),
        ("<think>r</think><answer>1</answer> suffix", False),
        ("<think>r</think>text<answer>1</answer>", False),
        ("<think>a</think><think>b</think><answer>1</answer>", False),
        ("<think>r</think><answer>1</answer><answer>2</answer>", False),
        ("<think>r<answer>1</answer></think>", False),
    ],
)
def test_format_ok(text, ok):
    assert format_ok(text) is ok


def test_answer_char_span():
    text = "<think>t</think>\n<answer> 1 </answer>"
    start, end = answer_char_span(text)
    assert text[start:end] == "1" and end == start + 1
    assert answer_char_span("<answer>1</answer><answer>1</answer>") is None
    assert answer_char_span("<answer>3</answer>") is None


def test_locate_answer_token_merged_and_special_tokens():
    text = "<think>t</think><answer>2</answer>"
    pos = answer_char_span(text)[0]
    assert pos == 24
    # tokens: <bos>(special) '<think>' 't' '</think>' '<answer' '>2' '</answer>' <eos>(special)
    offsets = [(0, 0), (0, 7), (7, 8), (8, 16), (16, 23), (23, 25), (25, 34), (0, 0)]
    assert locate_answer_token(offsets, pos) == 5
    # tokens: ... '<answer>' '2</' 'answer>'
    offsets = [(0, 16), (16, 24), (24, 27), (27, 34)]
    assert locate_answer_token(offsets, pos) == 2
    # the digit as its own token, with zero-length specials around and at its position
    offsets = [(0, 0), (0, 24), (24, 24), (24, 25), (25, 34)]
    assert locate_answer_token(offsets, pos) == 3
    assert locate_answer_token([(0, 0), (0, 10)], pos) is None


def test_format_target_and_normalise_output():
    assert format_target("r", 2) == "<think>r</think><answer>2</answer>"
    with pytest.raises(ValueError):
        format_target("r", 3)
    cases = {
        "<think>r</think><answer>1</answer>": "<think>r</think><answer>1</answer>",
        "\n <think> r </think>  <answer> 2 </answer> \n": "<think>r</think><answer>2</answer>",
        "reasoning only <answer>1</answer>": "<think>reasoning only</think><answer>1</answer>",
        "<think>r <answer>2</answer>": "<think>r</think><answer>2</answer>",
        "<think>r</think>\n2": "<think>r</think><answer>2</answer>",
        "<think>r</think> Answer: 1.": "<think>r</think><answer>1</answer>",
    }
    for raw, want in cases.items():
        got = normalise_output(raw)
        assert got == want, raw
        assert format_ok(got) and parse_answer(got) is not None
    for raw in [
        "<think>r</think><answer>1</answer><answer>2</answer>",
        "<think>r</think><answer>3</answer>",
        "<think>r</think><answer>1</answer> but maybe 2",
        "<think>r</think>\\boxed{1}",
        "<think>r</think> 1 or 2",
        "no tags at all 1",
        "<think>a</think> text <answer>1</answer>",
        "<think>a</think><think>b</think><answer>1</answer>",
    ]:
        assert normalise_output(raw) is None, raw
