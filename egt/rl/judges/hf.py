"""A logic judge run by a local Hugging Face model (text-only consistency question).

Loads lazily (on the first call) and greedily generates a few tokens per item;
a leading "yes" is +1, "no" −1, anything else 0. Any local chat model works:
a VLM directory (through egt's loader) or a plain causal LM.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from egt.eval.generation import generation_config, model_generate
from egt.rl.judges.base import JudgeItem, LogicJudge, consistency_prompt, parse_consistency

log = logging.getLogger(__name__)


class HFJudge(LogicJudge):
    """R_logic from a local model asked egt's consistency question (``consistency_prompt``): a reply
    starting "yes" → +1, "no" → −1, else 0 (undecided). R1-Reward used Qwen2.5-VL-7B as this judge;
    the question's wording is egt's (egt.rl.judges.base.consistency_prompt)."""

    name = "hf"

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        device: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 4,
        last_lines: int = 3,
    ):
        self.model_path, self.dtype, self.device = str(model_path), dtype, device
        self.batch_size, self.max_new_tokens, self.last_lines = batch_size, max_new_tokens, last_lines
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from egt.models.loader import load_model, load_processor

        path = Path(self.model_path).expanduser()
        try:
            self._tok = load_processor(path)
        except TypeError:  # a text-only model: a tokenizer is all there is
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(path)
        self._model = load_model(path, dtype=self.dtype).eval()
        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self._model.to(device)
        log.info("[rl] hf judge loaded from %s on %s", path, device)

    def _prompt(self, item: JudgeItem) -> str:
        messages = [{"role": "user", "content": [{"type": "text", "text": consistency_prompt(item, self.last_lines)}]}]
        return self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def verdicts(self, items: list[JudgeItem]) -> list[int | None]:
        if self._model is None:
            self._load()
        tok = getattr(self._tok, "tokenizer", self._tok)
        device = next(self._model.parameters()).device
        out: list[int | None] = []
        for start in range(0, len(items), self.batch_size):
            texts = [self._prompt(it) for it in items[start : start + self.batch_size]]
            tok.padding_side = "left"
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            greedy = generation_config(self.max_new_tokens, 0.0, tok.pad_token_id)  # nothing from the checkpoint
            seq = model_generate(self._model, dict(enc), greedy)
            replies = tok.batch_decode(seq[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out += [parse_consistency(r) for r in replies]
        return out

    def public_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self.model_path,
            "max_new_tokens": self.max_new_tokens,
            "last_lines": self.last_lines,
        }
