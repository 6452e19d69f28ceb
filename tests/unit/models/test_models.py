"""egt.models: build a tiny Qwen2.5-VL offline, reload it, run it."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from egt.models import (
    EgtQwen2_5_VLProcessor,
    TinyVLMSpec,
    build_tiny_vlm,
    default_corpus,
    load_model,
    load_model_and_processor,
    load_processor,
    multimodal_token_ids,
)
from egt.models import loader
from egt.models.builder import bpe_vocab, mrope_section, train_bpe, train_tokenizer

MESSAGES = [
    {"role": "system", "content": "You are a judge."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red circles?"}]},
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "model", TinyVLMSpec(), default_corpus())


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return load_model_and_processor(tiny_dir)


def _batch(processor, n=2, size=56):
    text = processor.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    images = [Image.new("RGB", (size, size), (200, 30 * i, 40)) for i in range(n)]
    return processor(text=[text] * n, images=images, return_tensors="pt", padding=True)


def test_build_writes_a_complete_directory(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "generation_config.json",
    } <= names
    assert not [p for p in tiny_dir.parent.iterdir() if ".tmp-" in p.name]
    with pytest.raises(FileExistsError):
        build_tiny_vlm(tiny_dir, TinyVLMSpec(), ["x"])


def test_embeddings_are_untied_by_default_and_tie_on_request(loaded, tmp_path):
    model, _ = loaded
    assert model.config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    tied = load_model(build_tiny_vlm(tmp_path / "tied", TinyVLMSpec(tie_word_embeddings=True), ["a b c"] * 4))
    assert tied.lm_head.weight.data_ptr() == tied.get_input_embeddings().weight.data_ptr()


def test_mrope_section_sums_to_half_head_dim():
    assert mrope_section(16) == [2, 3, 3]
    assert mrope_section(128) == [16, 24, 24]  # Qwen2.5-VL-7B's own split
    assert sum(mrope_section(64)) == 32


def test_config_agrees_with_tokenizer(loaded):
    model, processor = loaded
    tok, cfg = processor.tokenizer, model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert cfg.text_config.vocab_size == len(tok)
    assert cfg.vision_config.out_hidden_size == cfg.text_config.hidden_size
    assert model.generation_config.pad_token_id == tok.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    assert tok.padding_side == "left"
    assert not model.training  # from_pretrained gives eval mode; callers call .train()
    assert next(model.parameters()).dtype == torch.float32


def test_processor_is_multimodal_and_image_tokens_match(loaded):
    model, processor = loaded
    assert isinstance(processor, EgtQwen2_5_VLProcessor)
    text = processor.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a judge.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>How many red circles?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # like Qwen2.5-VL's own template: no system message -> the default one, in few tokens
    text = processor.apply_chat_template(MESSAGES[1:], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert len(processor.tokenizer("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")["input_ids"]) <= 10
    for size, n_tokens in ((56, 4), (112, 16)):
        batch = _batch(processor, size=size)
        assert (batch["input_ids"] == model.config.image_token_id).sum(1).tolist() == [n_tokens] * 2
    batch = _batch(processor)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (*batch["input_ids"].shape, len(processor.tokenizer))
    assert torch.isfinite(out.logits).all()


def test_generate_never_emits_multimodal_tokens(loaded):
    model, processor = loaded
    mm = multimodal_token_ids(processor)
    tok = processor.tokenizer
    assert mm == sorted(tok.convert_tokens_to_ids(t) for t in loader.MULTIMODAL_TOKENS)
    assert multimodal_token_ids(tok) == mm
    batch = _batch(processor, n=4)
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=5, do_sample=True, suppress_tokens=mm)
    new = out[:, batch["input_ids"].shape[1] :]
    assert new.shape[0] == 4 and 1 <= new.shape[1] <= 5
    assert not torch.isin(new, torch.tensor(mm)).any()


def test_tokenizer_is_deterministic(tiny_dir, tmp_path):
    again = build_tiny_vlm(tmp_path / "again", TinyVLMSpec(), list(reversed(default_corpus())))
    assert (again / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()
    assert (again / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()


def test_train_bpe_hand_worked():
    # pair counts: ab 5+2=7, bc 5, ca 2, cd 3 → merge ab; then (ab)c 5, c(ab) 2, cd 3 → merge abc;
    # then cd 3, then c(ab) 2 (= min_frequency); then no pair is left
    words = {"abc": 5, "cab": 2, "cd": 3}
    assert train_bpe(words, "abcd", 10) == [("a", "b"), ("ab", "c"), ("c", "d"), ("c", "ab")]
    assert train_bpe(words, "abcd", 1) == [("a", "b")]
    assert train_bpe(words, "abcd", 10, min_frequency=4) == [("a", "b"), ("ab", "c")]


def test_train_bpe_breaks_ties_by_the_pair_not_by_order():
    # "xy" and "ab" both occur 4 times: the smaller pair ("a", "b") goes first, whatever the order
    assert train_bpe({"xy": 4, "ab": 4}, "abxy", 5) == [("a", "b"), ("x", "y")]
    assert train_bpe({"ab": 4, "xy": 4}, "abxy", 5) == [("a", "b"), ("x", "y")]
    # a run of one symbol merges left to right: aaaa → (aa)(aa) → aaaa
    assert train_bpe({"aaaa": 3}, "a", 5) == [("a", "a"), ("aa", "aa")]


def test_train_bpe_rejects_characters_outside_the_alphabet():
    with pytest.raises(ValueError, match="outside the alphabet"):
        train_bpe({"abz": 2}, "ab", 3)


def test_bpe_vocab_keeps_ids_contiguous_when_two_merges_make_one_token():
    vocab = bpe_vocab(["<s>", "a", "b", "c"], [("b", "c"), ("a", "bc"), ("a", "b"), ("ab", "c"), ("ab", "ab")])
    assert vocab == {"<s>": 0, "a": 1, "b": 2, "c": 3, "bc": 4, "abc": 5, "ab": 6, "abab": 7}


def test_tokenizer_is_the_same_in_a_fresh_process():
    """HF's BpeTrainer breaks count ties in hash-map order, which changes between processes."""
    code = textwrap.dedent("""
        import sys
        from egt.data.world import WorldConfig
        from egt.models.corpus import world_corpus
        from egt.models.builder import train_tokenizer
        tok = train_tokenizer(world_corpus(WorldConfig(seed=0), n=1000), 600)
        sys.stdout.write(tok.backend_tokenizer.to_str())
    """)
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    vocab = json.loads(runs[0])["model"]["vocab"]
    assert len(vocab) <= 600 - 4 and vocab["<|endoftext|>"] == 0


def test_tokenizer_round_trips_and_respects_the_cap():
    tok = train_tokenizer(default_corpus(), 300)
    assert len(tok) <= 300
    text = "Is there a red circle? <think>I see 3.</think><answer>1</answer> ünïcode"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_tags_survive_skip_special_tokens_and_digits_are_single_tokens(loaded):
    tok = loaded[1].tokenizer
    ids = tok("<think>a</think><answer>2</answer><|im_end|><|endoftext|>")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>a</think><answer>2</answer>"
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok(tag)["input_ids"]) == 1
    assert tok.tokenize("1") == ["1"] and tok.tokenize("2") == ["2"]


def test_offset_mapping_locates_the_answer_digit(loaded):
    tok = loaded[1].tokenizer
    text = "<think>a</think><answer>2</answer>"
    enc = tok(text, return_offsets_mapping=True)
    pos = text.index("2", len("<think>a</think>"))
    hits = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if s <= pos < e]
    assert len(hits) == 1
    assert tok.decode([enc["input_ids"][hits[0]]]) == "2"


def test_saved_processor_names_the_stock_class(tiny_dir, tmp_path):
    # a judge egt saves names Qwen2_5_VLProcessor, as a real checkpoint does (without egt, plain
    # transformers then asks for a video processor instead of silently returning the bare tokenizer);
    # egt's loader maps it to its own images-only class
    load_processor(tiny_dir).save_pretrained(tmp_path / "p")
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / "p" / name).read_text())["processor_class"] == "Qwen2_5_VLProcessor"
    assert "EgtQwen2_5_VLProcessor" not in "".join(f.read_text() for f in (tmp_path / "p").glob("*.json"))


def test_stock_processor_class_loads_without_torchvision(tiny_dir, tmp_path, monkeypatch):
    copy = tmp_path / "stock"
    shutil.copytree(tiny_dir, copy)
    cfg_file = copy / "processor_config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "processor_class": "Qwen2_5_VLProcessor"}))
    monkeypatch.setattr(loader.egt_processor, "torchvision_available", lambda: False)
    assert isinstance(load_processor(copy), EgtQwen2_5_VLProcessor)


def test_saved_processor_carries_the_video_processor_transformers_would_derive(tiny_dir):
    # the stock Qwen2_5_VLProcessor needs a video processor: egt writes the one transformers derives from
    # the image processor config (same geometry and pixel budget), so plain transformers loads the judge
    cfg = json.loads((tiny_dir / "processor_config.json").read_text())
    image, video = cfg["image_processor"], cfg["video_processor"]
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor" and video["do_sample_frames"] is False
    for key in ("patch_size", "merge_size", "temporal_patch_size", "size", "image_mean", "image_std", "resample"):
        assert video[key] == image[key], key
    assert loader.egt_processor.has_video_processor_config(tiny_dir)


def test_stock_processor_class_without_a_video_config_loads_where_torchvision_is(tiny_dir, tmp_path, monkeypatch):
    # on a GPU image (torchvision importable) the stock class needs a video processor config, which egt's
    # judges saved before 2026-11-30 lack: egt's loader takes its images-only class for them
    copy = tmp_path / "old"
    shutil.copytree(tiny_dir, copy)
    cfg = json.loads((copy / "processor_config.json").read_text())
    del cfg["video_processor"]
    (copy / "processor_config.json").write_text(json.dumps(cfg))
    assert cfg["processor_class"] == "Qwen2_5_VLProcessor"
    monkeypatch.setattr(loader.egt_processor, "torchvision_available", lambda: True)
    monkeypatch.setattr(
        loader.AutoProcessor,
        "from_pretrained",
        lambda *a, **k: pytest.fail("AutoProcessor would look for a video processor"),
    )
    assert isinstance(load_processor(copy), EgtQwen2_5_VLProcessor)


PLAIN_LOAD = """
import sys
from PIL import Image
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
path = sys.argv[1]
processor = AutoProcessor.from_pretrained(path)
model = AutoModelForImageTextToText.from_pretrained(path)
assert type(processor).__name__ == "Qwen2_5_VLProcessor", type(processor)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which is better?"}]}]
text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
batch = processor(text=[text], images=[Image.new("RGB", (56, 56), (200, 30, 40))], return_tensors="pt")
with torch.no_grad():
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
assert "egt" not in sys.modules and not any(m.startswith("egt.") for m in sys.modules)
print("plain transformers:", type(processor).__name__, type(model).__name__, tuple(out.shape))
"""


@pytest.mark.gpu  # needs torchvision, which only the GPU image has (never next to the CPU torch)
def test_saved_judge_loads_in_plain_transformers_without_egt(tiny_dir, tmp_path):
    if not loader.egt_processor.torchvision_available():
        pytest.skip("torchvision not importable: the stock Qwen2_5_VLProcessor cannot be built here")
    saved = tmp_path / "judge"
    model, processor = load_model_and_processor(tiny_dir)
    model.save_pretrained(saved)
    processor.save_pretrained(saved)
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_LOAD)
    # a fresh interpreter that never imports egt (the script asserts it); PYTHONPATH is kept for where
    # transformers itself comes from
    run = subprocess.run(
        [sys.executable, str(script), str(saved)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "plain transformers: Qwen2_5_VLProcessor" in run.stdout


def test_bare_tokenizer_is_an_error(tiny_dir, tmp_path):
    # An unresolvable processor_class is what a process that never imported egt sees:
    # AutoProcessor then silently falls back to the tokenizer.
    copy = tmp_path / "m"
    shutil.copytree(tiny_dir, copy)
    for name in ("processor_config.json", "tokenizer_config.json"):
        cfg = json.loads((copy / name).read_text())
        (copy / name).write_text(json.dumps({**cfg, "processor_class": "UnknownProcessor"}))
    with pytest.raises(TypeError, match="not a multimodal processor"):
        load_processor(copy)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_processor(tmp_path / "empty")


def test_flash_attention_without_flash_attn(tiny_dir, monkeypatch):
    from egt.models import attention

    monkeypatch.setattr(attention, "flash_attn_2_version", lambda: None)
    with pytest.raises(ImportError, match=r"pip install egt\[gpu\].*sdpa"):
        load_model(tiny_dir, attn_implementation="flash_attention_2")


def test_bad_dtype(tiny_dir):
    with pytest.raises(ValueError, match="bfloat16"):
        load_model(tiny_dir, dtype="fp32")
