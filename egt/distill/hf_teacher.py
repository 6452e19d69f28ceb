"""A teacher that is a local Hugging Face VLM directory (batched generation, paper §2.2).

The model is loaded on first use (so building the artifact key costs nothing),
to CUDA when available. Generation goes through :func:`egt.eval.generation.generate`
(left padding, multimodal special tokens suppressed). With ``temperature > 0``
each ``(seed, attempt, batch)`` seeds torch, so a retry differs from the first
try and a rerun repeats itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from egt.data.encode import ChatEncoder
from egt.data.prompt import TEMPLATES, template_key
from egt.data.schema import stable_hash
from egt.distill.teacher import Teacher
from egt.eval.generation import generate
from egt.models.loader import load_model_and_processor

__all__ = ["HFTeacher"]

log = logging.getLogger(__name__)
_VERSION = 1


class HFTeacher(Teacher):
    """``generate`` on a local VLM; one device, so one batch at a time."""

    name = "hf"
    batched = True
    max_concurrency = 1

    def __init__(
        self,
        model_path: str,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        template: str = "r1_reward",
        max_new_tokens: int = 1024,
        max_length: int = 2048,
        temperature: float = 0.7,
        seed: int = 0,
        trust_remote_code: bool = False,
    ):
        if not model_path or not (Path(model_path).expanduser() / "config.json").is_file():
            raise FileNotFoundError(
                f"distill.teacher.model_path={model_path!r} is not a Hugging Face model "
                "directory (no config.json): point it at a local VLM"
            )
        if template not in TEMPLATES:
            raise ValueError(f"distill.teacher.template={template!r}: choose from {sorted(TEMPLATES)}")
        self.model_path = str(Path(model_path).expanduser().resolve())
        self.dtype, self.attn_implementation, self.template = dtype, attn_implementation, template
        self.max_new_tokens, self.max_length = int(max_new_tokens), int(max_length)
        self.temperature, self.seed, self.trust_remote_code = float(temperature), int(seed), trust_remote_code
        self._model: Any = None
        self._encoder: ChatEncoder | None = None

    def public_config(self) -> dict:
        return {
            "name": self.name,
            "version": _VERSION,
            "model_path": self.model_path,
            "dtype": self.dtype,
            "template": template_key(self.template),
            "max_new_tokens": self.max_new_tokens,
            "max_length": self.max_length,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    def _load(self) -> tuple[Any, ChatEncoder]:
        if self._model is None:
            model, processor = load_model_and_processor(
                self.model_path, self.dtype, self.attn_implementation, self.trust_remote_code
            )
            self._model = model.to("cuda" if torch.cuda.is_available() else "cpu")
            self._encoder = ChatEncoder(processor, template=self.template, max_length=self.max_length)
            log.info("[distill] hf teacher %s loaded on %s", self.model_path, self._model.device)
        return self._model, self._encoder

    def check(self) -> None:
        self._load()  # a broken directory fails before any work

    def generate(self, samples: list[dict], attempt: int) -> list[str]:
        model, encoder = self._load()
        if self.temperature > 0:
            torch.manual_seed(stable_hash(f"{self.seed}:{attempt}:{samples[0].get('id')}") % 2**63)
        return generate(
            model,
            encoder,
            samples,
            max_new_tokens=self.max_new_tokens,
            batch_size=len(samples),
            temperature=self.temperature,
            desc=f"teacher attempt {attempt}",
        )
