"""Build a tiny random Qwen2.5-VL offline: BPE tokenizer + processor + fp32 weights.

Nothing is downloaded. The result is an ordinary Hugging Face directory that
``egt.models.loader`` (or ``AutoModelForImageTextToText``) loads like any checkpoint.
Every pitfall listed in docs/design.md §7.3 is handled here: mrope sections that
sum to head_dim/2, vision ``out_hidden_size`` equal to the text hidden size, special
token ids shared by tokenizer and config, and ``generation_config`` pad/eos ids.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from egt.models.processor import EgtQwen2_5_VLProcessor, make_image_processor
from egt.utils.atomic import atomic_path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but *not* special: skip_special_tokens=True keeps them in decoded text.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
# Qwen2's pre-tokenizer split: single digits, letters with one leading non-letter, ...
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_SYSTEM = "You are a helpful assistant."
# Qwen2.5-VL's own template, text and images only; like it, a conversation without a system
# message gets the default one (the demo model also uses it as its attention sink, docs/demo-judge.md).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in item -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass
class TinyVLMSpec:
    """Shape of the tiny model. 56×56 px → 4 image tokens, 112×112 → 16 (larger images shrink)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_heads: int = 4
    vocab_size: int = 600  # BPE cap, special tokens and tags included (a narrow corpus gives fewer)
    max_position_embeddings: int = 2048
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112
    # Untied, as in Qwen2.5-VL-7B. Tied, a random-init model trapped itself on the world:
    # the perceived colour is unlearnable at first, its best guess is uniform over the
    # colours, and the shared matrix pulled the colour embeddings together (cosine 0.86
    # after SFT), so it could no longer read, copy or compare colours in the prompt.
    tie_word_embeddings: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError for shapes Qwen2.5-VL cannot take."""
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"hidden_size={self.hidden_size} must split into {self.num_heads} heads of even size")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError(f"vision_hidden_size={self.vision_hidden_size} must divide by vision_heads")
        if self.vocab_size < 256 + len(SPECIAL_TOKENS) + len(TAG_TOKENS):
            raise ValueError(f"vocab_size={self.vocab_size} must exceed the 256-byte alphabet plus special tokens")


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width), Qwen's 1/4, 3/8, 3/8."""
    half = head_dim // 2
    hw = (half - half // 4) // 2
    return [half - 2 * hw, hw, hw]


def train_bpe(
    words: Mapping[str, int], alphabet: Iterable[str], n_merges: int, min_frequency: int = 2
) -> list[tuple[str, str]]:
    """Byte-pair merges learnt from pre-tokenised ``words`` (word → count), in merge order.

    Each step merges the adjacent pair with the highest count summed over the words; ties go
    to the lexicographically smallest ``(left, right)``, so the result depends only on the
    counts. (HF ``tokenizers``' trainer breaks such ties in hash-map order, which differs
    between processes: huggingface/tokenizers#1794.) Stops after ``n_merges`` merges or when
    no pair occurs ``min_frequency`` times. Characters outside ``alphabet`` are an error.
    """
    known = set(alphabet)
    split = []
    for word, count in sorted(words.items()):
        if count <= 0:
            continue
        unknown = set(word) - known
        if unknown:
            raise ValueError(f"word {word!r} has characters outside the alphabet: {sorted(unknown)}")
        split.append(([*word], count))
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: dict[tuple[str, str], int] = {}
        for symbols, count in split:
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] = pairs.get(pair, 0) + count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        left, right = best
        for symbols, _ in split:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == left and symbols[i + 1] == right:
                    symbols[i : i + 2] = [left + right]
                i += 1
    return merges


def bpe_vocab(base: Iterable[str], merges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Token → id: ``base`` in order, then each merge's result. A result already in the vocabulary
    keeps its id (as HF's trainer does), so ids stay contiguous and the added tokens after them
    cannot collide with one."""
    tokens = dict.fromkeys([*base, *(a + b for a, b in merges)])
    return {t: i for i, t in enumerate(tokens)}


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE with Qwen2-VL's special tokens and a chat template.

    ids: the special tokens, then the 256 byte symbols in code-point order, then one token
    per merge (``train_bpe``), then the think/answer tags; at most ``vocab_size`` in all.
    """
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    words: Counter[str] = Counter()
    for line in corpus:
        words.update(piece for piece, _ in pre.pre_tokenize_str(line))
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    n_merges = vocab_size - len(TAG_TOKENS) - len(SPECIAL_TOKENS) - len(alphabet)
    merges = train_bpe(words, alphabet, n_merges)
    tok = Tokenizer(models.BPE(vocab=bpe_vocab([*SPECIAL_TOKENS, *alphabet], merges), merges=merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=1 << 30,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )


def make_config(spec: TinyVLMSpec, tokenizer: PreTrainedTokenizerFast):
    """A Qwen2_5_VLConfig whose token ids and shapes agree with ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = spec.hidden_size // spec.num_heads
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope_section(head_dim)},
        max_window_layers=spec.num_layers,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=spec.vision_depth,
        hidden_size=spec.vision_hidden_size,
        num_heads=spec.vision_heads,
        intermediate_size=2 * spec.vision_hidden_size,
        out_hidden_size=spec.hidden_size,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[spec.vision_depth - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=spec.tie_word_embeddings,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_tiny_vlm(out_dir: str | Path, spec: TinyVLMSpec, corpus: Iterable[str]) -> Path:
    """Train a tokenizer on ``corpus``, build a random fp32 Qwen2.5-VL and save both to ``out_dir``.

    Written to a temporary sibling directory and renamed into place, so a half-built
    ``out_dir`` never exists. Raises FileExistsError if ``out_dir`` exists and is not empty.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration

    spec.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} already exists and is not empty; pick a fresh directory")
    roles = f"system\n{DEFAULT_SYSTEM}\nuser\nassistant\n"  # the template's own words, one token each
    tokenizer = train_tokenizer([*corpus, *[roles] * 100], spec.vocab_size)
    processor = EgtQwen2_5_VLProcessor(
        make_image_processor(spec.min_pixels, spec.max_pixels), tokenizer, chat_template=CHAT_TEMPLATE
    )
    config = make_config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.pad_token_id

    with atomic_path(out_dir) as tmp:  # an empty out_dir (checked above) is replaced
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out_dir


_SHAPES = ("circle", "square", "triangle", "star", "hexagon")
_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black", "white")
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_PHRASES = (
    "The image shows {n} {c} {s}s.",
    "Is there a {c} {s} in the image?",
    "How many {c} {s}s are there?",
    "What colour is the {s}?",
    "Response 1 is correct and Response 2 is wrong.",
    "Response 2 says there are {d} {s}s, which is wrong.",
    "Response 1 says the {s} is {c}, which is correct.",
    "Compare the two responses and decide which one is better.",
    "<think>I count {d} {c} {s}s in the picture.</think><answer>{a}</answer>",
    "The answer is {a} because the {c} {s} is clearly visible.",
    "There is no {c} {s} here, so the response hallucinates an object.",
)


def default_corpus(n: int = 400) -> list[str]:
    """A few hundred deterministic lines of generic judge-style English, for tests."""
    combos = itertools.product(_PHRASES, _COLOURS, _SHAPES)
    lines = []
    for i, (p, c, s) in enumerate(itertools.islice(itertools.cycle(combos), n)):
        lines.append(p.format(n=_NUMBERS[i % len(_NUMBERS)], c=c, s=s, d=i % 10, a=1 + i % 2))
    lines.append(" ".join(_NUMBERS) + " " + " ".join("0123456789"))
    return lines
