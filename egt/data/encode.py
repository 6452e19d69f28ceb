"""Turn samples into model inputs through the model's own processor and chat template.

Training examples are ``prompt ids + target ids``: the prompt goes through the
processor (which expands image placeholders into the right number of image
tokens), the assistant target is tokenised on its own and appended, and only
the target's tokens carry labels (prompt and image tokens are -100).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from egt.data.prompt import build_messages
from egt.data.schema import BadSampleError
from egt.utils.images import to_rgb

IGNORE = -100
TEXT_KEYS = ("input_ids", "attention_mask", "labels")


def _images(sample: dict[str, Any]) -> list:
    return [to_rgb(im) for im in (sample.get("images") or [])]


class ChatEncoder:
    """Samples → model features with the processor's chat template and image processor.

    ``length_key`` / ``skip_key`` name the stage's own config keys in the error for an over-long
    prompt (e.g. ``eval.max_length`` / ``eval.on_bad_sample``). Counts image tokens per prompt
    (:meth:`image_token_stats`), so a stage can log what its pixel budget costs.
    """

    def __init__(
        self,
        processor: Any,
        template: str = "short",
        max_length: int = 512,
        length_key: str = "sft.max_length",
        skip_key: str = "data.on_bad_sample",
    ):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.template = template
        self.max_length = max_length
        self.length_key, self.skip_key = length_key, skip_key
        self.end_text = self._assistant_end()
        image_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self.image_token_id = (
            image_id if isinstance(image_id, int) and image_id != self.tokenizer.unk_token_id else None
        )
        self._image_tokens: list[int] = [0, 0, 0]  # prompts, image tokens, most in one prompt

    def image_token_stats(self) -> dict[str, float]:
        """Image tokens per encoded prompt: ``{"prompts", "mean", "max"}`` (since construction)."""
        n, total, most = self._image_tokens
        return {"prompts": n, "mean": round(total / n, 1) if n else 0.0, "max": most}

    def _assistant_end(self) -> str:
        """What the chat template writes after an assistant turn (e.g. ``<|im_end|>\\n``)."""
        eos = self.tokenizer.eos_token or ""
        return eos + ("\n" if eos == "<|im_end|>" else "")

    def prompt_text(self, sample: dict[str, Any]) -> str:
        messages = build_messages(sample, template=self.template)
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompt(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Prompt features for one sample: input_ids [T] and the processor's image tensors."""
        images = _images(sample)
        feats = self.processor(text=[self.prompt_text(sample)], images=images or None, return_tensors="pt")
        n = feats["input_ids"].shape[1]
        out = {}
        for k, v in feats.items():
            if k == "attention_mask":
                continue
            # token-aligned fields ([1, T]: input_ids, mm_token_type_ids, …) become [T]
            out[k] = v[0] if v.dim() == 2 and v.shape == (1, n) else v
        n_image = int((out["input_ids"] == self.image_token_id).sum()) if self.image_token_id is not None else 0
        self._image_tokens = [
            self._image_tokens[0] + 1,
            self._image_tokens[1] + n_image,
            max(self._image_tokens[2], n_image),
        ]
        if len(out["input_ids"]) > self.max_length:
            sizes = ", ".join(f"{im.width}×{im.height}" for im in images) or "none"
            budget = getattr(getattr(self.processor, "image_processor", None), "size", None)
            budget = dict(budget or {}).get("longest_edge") if budget is not None else None
            raise BadSampleError(
                sample.get("id"),
                "query",
                f"the prompt is {len(out['input_ids'])} tokens, {n_image} of them image tokens (images: {sizes} px), "
                f"over {self.length_key}={self.max_length}; truncating would cut the image or the responses. "
                f"Raise {self.length_key}, lower the pixel budget (model.max_pixels, now {budget}), or skip "
                f"such samples ({self.skip_key}=skip)",
                kind="prompt too long",
            )
        return out

    def encode_example(self, sample: dict[str, Any], target: str) -> dict[str, torch.Tensor]:
        """Prompt + assistant target with labels on the target only."""
        feats = self.encode_prompt(sample)
        tgt = self.tokenizer(target + self.end_text, add_special_tokens=False)["input_ids"]
        prompt = feats["input_ids"]
        if len(prompt) + len(tgt) > self.max_length:
            raise BadSampleError(
                sample.get("id"),
                "target",
                f"prompt ({len(prompt)}) + target ({len(tgt)}) tokens exceed max_length={self.max_length}",
            )
        tgt_t = torch.tensor(tgt, dtype=prompt.dtype)
        for k in token_keys(feats):  # target tokens are plain text: type 0
            feats[k] = torch.cat([feats[k], torch.zeros(len(tgt), dtype=feats[k].dtype)])
        feats["input_ids"] = torch.cat([prompt, tgt_t])
        feats["labels"] = torch.cat([torch.full_like(prompt, IGNORE), tgt_t])
        return feats


def image_tokens(encoder: ChatEncoder) -> dict[str, float]:
    """``{"image_tokens_mean", "image_tokens_max"}`` per prompt this encoder encoded (this rank's), for a
    stage summary: what the pixel budget (model.min_pixels / max_pixels) costs in sequence length."""
    stats = encoder.image_token_stats()
    return {"image_tokens_mean": stats["mean"], "image_tokens_max": stats["max"]}


def token_keys(feats: dict[str, torch.Tensor]) -> list[str]:
    """Fields other than input_ids/labels that hold one value per token (1-D, same length)."""
    n = len(feats["input_ids"])
    return [k for k, v in feats.items() if k not in TEXT_KEYS and v.dim() == 1 and len(v) == n]


def collate(batch: Sequence[dict[str, torch.Tensor]], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad text fields to the longest (``side`` = right for training, left for generation);
    concatenate every other tensor (pixel_values, image_grid_thw, …) along dim 0, over the samples that
    have it (a sample without an image has no pixel_values; before, the first sample's keys decided)."""
    width = max(len(b["input_ids"]) for b in batch)
    out: dict[str, Any] = {}
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long) if "labels" in batch[0] else None
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        sl = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, sl] = b["input_ids"]
        mask[i, sl] = 1
        if labels is not None:
            labels[i, sl] = b["labels"]
    out["input_ids"], out["attention_mask"] = ids, mask
    if labels is not None:
        out["labels"] = labels
    per_token = token_keys(batch[0])
    for key in per_token:
        out[key] = torch.zeros((len(batch), width), dtype=batch[0][key].dtype)
        for i, b in enumerate(batch):
            n = len(b[key])
            out[key][i, slice(0, n) if side == "right" else slice(width - n, width)] = b[key]
    for key in dict.fromkeys(k for b in batch for k in b):  # every sample's keys: a text-only one has no pixels
        if key not in TEXT_KEYS and key not in per_token:
            out[key] = torch.cat([b[key] for b in batch if key in b], dim=0)
    return out
