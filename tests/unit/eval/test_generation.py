"""egt owns decoding: a checkpoint's generation_config.json (Qwen2.5-VL-7B-Instruct's, here on the
tiny model) changes nothing unless ``use_checkpoint_defaults`` asks for it."""

import json
import shutil

import pytest
import torch

from egt.data.encode import ChatEncoder
from egt.eval.generation import generate_batch, generation_config, model_generate, prompt_batch
from egt.models.loader import load_model_and_processor

# what Qwen2.5-VL-7B-Instruct ships (generation_config.json), besides its token ids
QWEN_SHIPPED = {"do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.1, "repetition_penalty": 1.05}


@pytest.fixture(scope="module")
def shipped_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shipped") / "model"
    shutil.copytree(tiny_model_dir, out)
    cfg = json.loads((out / "generation_config.json").read_text())
    (out / "generation_config.json").write_text(json.dumps({**cfg, **QWEN_SHIPPED}))
    return out


@pytest.fixture(scope="module")
def prompts(world_small):
    return list(world_small["rl_pool"].select(range(4)))


def _draws(model_dir, prompts, temperature, n=4, **sampling):
    model, proc = load_model_and_processor(model_dir)
    enc = ChatEncoder(proc)
    batch = prompt_batch(enc, prompts, "cpu")
    torch.manual_seed(0)
    return [generate_batch(model, enc, batch, 12, temperature, sampling) for _ in range(n)]


def test_generation_config_turns_off_what_it_does_not_set():
    g = generation_config(16, 0.7, 0, suppress_ids=[5, 6])
    assert (g.do_sample, g.temperature, g.top_k, g.top_p, g.repetition_penalty) == (True, 0.7, 0, 1.0, 1.0)
    assert g.bad_words_ids == [[5], [6]] and g.max_new_tokens == 16
    greedy = generation_config(16, 0.0, 0, top_k=3)
    assert greedy.do_sample is False and greedy.top_k == 3 and greedy.repetition_penalty == 1.0
    ckpt = generation_config(16, 0.0, 0, use_checkpoint_defaults=True)
    assert ckpt.top_p is None and ckpt.repetition_penalty is None  # left for the checkpoint to fill


def test_shipped_generation_config_does_not_leak(shipped_dir, tiny_model_dir, prompts):
    # greedy: the same ids with and without the shipped file (its repetition penalty would apply)
    assert torch.equal(_draws(shipped_dir, prompts, 0.0, n=1)[0], _draws(tiny_model_dir, prompts, 0.0, n=1)[0])
    # sampling at T = 1 draws different outputs (the shipped top_k = 1 would make every draw the same)
    draws = torch.stack(_draws(shipped_dir, prompts, 1.0))  # [n, B, G]
    distinct = [len({tuple(d[i].tolist()) for d in draws}) for i in range(len(prompts))]
    assert max(distinct) > 1, distinct
    # ... and the same draws as the checkpoint without the file
    assert torch.equal(draws, torch.stack(_draws(tiny_model_dir, prompts, 1.0)))


def test_checkpoint_defaults_apply_only_when_asked(shipped_dir, prompts):
    draws = torch.stack(_draws(shipped_dir, prompts, 1.0, use_checkpoint_defaults=True))  # top_k = 1: greedy
    assert all(len({tuple(d[i].tolist()) for d in draws}) == 1 for i in range(len(prompts)))
    model, _ = load_model_and_processor(shipped_dir)
    before = model.generation_config.to_dict()
    model_generate(
        model,
        {"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.ones(1, 2, dtype=torch.long)},
        generation_config(2, 0.0, 0),
    )
    assert model.generation_config.to_dict() == before  # restored after the call


def test_row_seeded_sampler_draws_from_the_warped_distribution():
    from egt.eval.generation import RowSeededSampler, row_seed

    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    n = 4000
    picks = torch.cat([RowSeededSampler([row_seed(0, i)], 2.0, None, None)(None, z).argmax(-1) for i in range(n)])
    freq = torch.bincount(picks, minlength=4).double() / n
    p = torch.softmax(z[0].double() / 2.0, -1)
    assert torch.allclose(freq, p, atol=4 * float((p * (1 - p) / n).sqrt().max()))  # 4 binomial sigmas
    top1 = [int(RowSeededSampler([row_seed(1, i)], 5.0, 1, None)(None, z).argmax()) for i in range(50)]
    assert set(top1) == {0}  # top_k = 1: always the mode
    out = RowSeededSampler([1, 2], 1.0, None, None)(None, z.repeat(2, 1))
    assert (out == 0).sum(-1).tolist() == [1, 1] and torch.isinf(out).sum().item() == 6  # one-hot rows
