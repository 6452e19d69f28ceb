"""The answer digit's token is found by character offsets of the generated ids, whatever the merges."""

import pytest

from egt.probe.locate import answer_token_index, reasoning_token_range, token_offsets


class PieceTokenizer:
    """decode = concatenation of string pieces; ids are indices into ``pieces``."""

    def __init__(self, pieces, strip_leading_space=False, special=()):
        self.pieces, self.strip, self.special = pieces, strip_leading_space, set(special)

    def decode(self, ids, skip_special_tokens=True):
        text = "".join(self.pieces[i] for i in ids if not (skip_special_tokens and i in self.special))
        return text.lstrip(" ") if self.strip else text


@pytest.mark.parametrize(
    "pieces,expected",
    [
        (["<think>", "x", "</think>", "<answer>", "2", "</answer>"], 4),  # digit alone
        (["<think>x</think>", "<answer", ">2", "</answer>"], 2),  # '>' merged before
        (["<think>x</think>", "<answer>", "2</", "answer>"], 2),  # '</' merged after
        (["<think>x</think><answer>", "1</answer>"], 1),
        (["<think>1 2</think>", "<answer>", "\n", " 1", " </answer>"], 3),  # spaces inside the tag
    ],
)
def test_awkward_merges(pieces, expected):
    tok = PieceTokenizer(pieces)
    assert answer_token_index(tok, list(range(len(pieces)))) == expected


def test_digits_in_the_reasoning_are_not_the_answer():
    pieces = ["<think>", "Response", " 2", " is", " wrong", "</think>", "<answer>", "1", "</answer>"]
    assert answer_token_index(PieceTokenizer(pieces), list(range(len(pieces)))) == 7


def test_no_answer_or_two_answers_is_none():
    tok = PieceTokenizer(["<think>", "x", "</think>", "<answer>", "1", "</answer>", "<answer>", "2"])
    assert answer_token_index(tok, [0, 1, 2]) is None
    assert answer_token_index(tok, list(range(8))) is None


def test_skipped_special_tokens_and_non_prefix_stable_decode():
    # id 0 is a special token that decode skips; decode strips a leading space (SentencePiece-like)
    pieces = ["<|x|>", " <think>", "a", "</think>", "<answer>", "2", "</answer>"]
    tok = PieceTokenizer(pieces, strip_leading_space=True, special=[0])
    ids = list(range(len(pieces)))
    assert answer_token_index(tok, ids) == 5
    spans = token_offsets(tok, ids)
    assert spans[0] == (0, 0) and spans[5] == (24, 25)


def test_real_tokenizer_generated_ids(tiny_model_dir):
    from egt.models.loader import load_processor

    tok = load_processor(tiny_model_dir).tokenizer
    for text in (
        "<think>The image shows 2 circles.</think><answer>2</answer>",
        "<think>x</think>\n<answer> 1 </answer>",
        "<think>a</think><answer>1</answer>",
    ):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        j = answer_token_index(tok, ids)
        digit = text[text.index("<answer>") + len("<answer>") :].strip()[0]
        assert j is not None and digit in tok.decode([ids[j]])


@pytest.mark.parametrize(
    "pieces,expected",
    [
        (["<think>", "a", " b", "</think>", "<answer>", "1", "</answer>"], (1, 3)),
        (["<think>a", " b</", "think><answer>1</answer>"], (0, 2)),  # tags merged with reasoning text
        (["<think>", "a", " b"], (1, 3)),  # cut off before </think>
        (["<think>", "</think>", "<answer>", "1", "</answer>"], None),  # empty reasoning
        (["<answer>", "1", "</answer>"], None),  # no <think>
    ],
)
def test_reasoning_tokens_by_offsets(pieces, expected):
    assert reasoning_token_range(PieceTokenizer(pieces), list(range(len(pieces)))) == expected
