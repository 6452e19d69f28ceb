"""Encoding through the real processor: labels only on the assistant target, padding, errors."""

import pytest
import torch

from egt.data.encode import IGNORE, ChatEncoder, collate
from egt.data.schema import BadSampleError
from egt.models import load_processor

TARGET = "<think>The image shows 2 red circles. Response 1 says 3: wrong.</think><answer>2</answer>"


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return ChatEncoder(load_processor(tiny_model_dir), max_length=512)


def test_labels_cover_exactly_the_target(encoder, world_small):
    sample = world_small["sft_pool"][0]
    ex = encoder.encode_example(sample, TARGET)
    prompt = encoder.encode_prompt(sample)["input_ids"]
    n = len(prompt)
    assert torch.equal(ex["input_ids"][:n], prompt)
    assert (ex["labels"][:n] == IGNORE).all()
    target_ids = ex["labels"][n:]
    assert (target_ids != IGNORE).all()
    assert encoder.tokenizer.decode(target_ids) == TARGET + "<|im_end|>\n"
    # image tokens are in the prompt and masked
    image_id = encoder.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (ex["input_ids"] == image_id).sum() == 4  # 56 px → 4 merged patches
    assert (ex["labels"] == image_id).sum() == 0


def test_prompt_ends_with_generation_prompt(encoder, world_small):
    assert encoder.prompt_text(world_small["bench"][0]).endswith("<|im_start|>assistant\n")


def test_collate_pads_right_for_training_and_left_for_generation(encoder, world_small):
    a = encoder.encode_example(world_small["sft_pool"][0], TARGET)
    b = encoder.encode_example(world_small["sft_pool"][1], "<think>x</think><answer>1</answer>")
    pad = encoder.tokenizer.pad_token_id
    right = collate([a, b], pad, "right")
    short = min(len(a["input_ids"]), len(b["input_ids"]))
    i = 0 if len(a["input_ids"]) == short else 1
    assert right["attention_mask"][i, :short].all() and not right["attention_mask"][i, short:].any()
    assert (right["labels"][i, short:] == IGNORE).all()
    left = collate([encoder.encode_prompt(world_small["bench"][k]) for k in range(3)], pad, "left")
    assert left["attention_mask"][:, -1].all()
    assert right["pixel_values"].shape[0] == a["pixel_values"].shape[0] + b["pixel_values"].shape[0]
    for key in ("mm_token_type_ids",):
        if key in right:
            assert right[key].shape == right["input_ids"].shape


def test_too_long_prompt_names_sample_and_field(tiny_model_dir, world_small):
    enc = ChatEncoder(load_processor(tiny_model_dir), max_length=40)
    sample = world_small["sft_pool"][0]
    with pytest.raises(BadSampleError) as e:
        enc.encode_prompt(sample)
    assert sample["id"] in str(e.value) and "query" in str(e.value)


def test_collate_keeps_the_images_whichever_sample_comes_first():
    """A text-only sample first no longer drops the others' pixel_values (the first sample's keys decided)."""
    text = {"input_ids": torch.tensor([1, 2]), "labels": torch.tensor([-100, 2])}
    image = {
        "input_ids": torch.tensor([3, 4, 5]),
        "labels": torch.tensor([-100, 4, 5]),
        "pixel_values": torch.ones(4, 6),
        "image_grid_thw": torch.tensor([[1, 2, 2]]),
    }
    for batch in ([text, image], [image, text]):
        out = collate(batch, 0)
        assert out["pixel_values"].shape == (4, 6) and out["image_grid_thw"].tolist() == [[1, 2, 2]]
