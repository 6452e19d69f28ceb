"""The pixel budget (model.min_pixels / max_pixels) reaches the processor; hand-worked token counts."""

import pytest
from PIL import Image

from egt.data.encode import ChatEncoder
from egt.data.schema import BadSampleError
from egt.models.loader import load_processor, set_pixel_budget


def _image_tokens(processor, side: int) -> int:
    grid = processor.image_processor(images=[Image.new("RGB", (side, side))], return_tensors="pt")["image_grid_thw"]
    return int(grid.prod()) // 4  # 2×2 patches merge into one token


def test_2240_px_image_at_the_shipped_and_r1_reward_budgets(tiny_model_dir):
    # shipped (Qwen2.5-VL): 2240 px = 80 × 28 px → 80² = 6,400 tokens (under 12,845,056 px, no resize)
    assert _image_tokens(load_processor(tiny_model_dir, min_pixels=3136, max_pixels=12845056), 2240) == 6400
    # R1-Reward's 1,003,520: β = 2240/√1003520 ≈ 2.236, ⌊2240/β/28⌋ = 35 → 35² = 1,225 tokens
    assert _image_tokens(load_processor(tiny_model_dir, max_pixels=1003520), 2240) == 1225
    # the tiny model's own budget (12,544 px = 112²): 4 × 4 = 16 tokens
    assert _image_tokens(load_processor(tiny_model_dir), 2240) == 16


def test_bad_budgets_are_refused(tiny_model_dir):
    proc = load_processor(tiny_model_dir)
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        set_pixel_budget(proc, min_pixels=10_000, max_pixels=5_000)
    with pytest.raises(ValueError, match=">= 784"):
        set_pixel_budget(proc, max_pixels=100)
    with pytest.raises(TypeError, match="no image processor"):
        set_pixel_budget(proc.tokenizer, max_pixels=100_000)


def test_over_long_prompt_names_the_stage_keys_and_the_budget(tiny_model_dir, world_small):
    proc = load_processor(tiny_model_dir)
    sample = dict(world_small["bench"][0])
    enc = ChatEncoder(proc, max_length=20, length_key="eval.max_length", skip_key="eval.on_bad_sample")
    with pytest.raises(BadSampleError) as e:
        enc.encode_prompt(sample)
    msg = str(e.value)
    assert e.value.kind == "prompt too long"  # what eval counts such a skip under
    assert sample["id"] in msg and "4 of them image tokens" in msg and "56×56 px" in msg
    assert "eval.max_length=20" in msg and "model.max_pixels, now 12544" in msg and "eval.on_bad_sample=skip" in msg
    ok = ChatEncoder(proc, max_length=10_000)
    ok.encode_prompt(sample)
    ok.encode_prompt(sample)
    assert ok.image_token_stats() == {"prompts": 2, "mean": 4.0, "max": 4}
