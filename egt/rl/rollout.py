"""Rollouts: G completions per prompt from the current policy, and log-probs of them.

A backend turns prompts into completion token ids; the HF ``generate`` backend
is the default (multimodal special tokens suppressed; ``top_k=0, top_p=1`` so it
samples from π_θ/T itself and the log-probs below are the sampling policy's).
``rl.backend=vllm`` (:mod:`egt.rl.vllm_backend`, optional extra) generates with vLLM,
its weights synced from the training model before every rollout (:meth:`RolloutBackend.sync`).

Sequences are laid out ``[left-padded prompt | completion padded to L]``, so the
last ``L + 1`` logits predict the completion (``logits_to_keep``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from egt.data.encode import ChatEncoder, collate, token_keys
from egt.eval.generation import generate_batch
from egt.probe.probe import last_hidden_and_head
from egt.rl.functional import chunked_token_logprobs, completion_mask


@dataclass
class Rollout:
    """One rollout batch of B = N·G sequences (prompt i's completions are rows i·G … i·G+G−1)."""

    samples: list[dict[str, Any]]  # N prompts (schema rows)
    group_size: int
    prompt_feats: list[dict[str, torch.Tensor]]  # B per-sequence prompt features (G copies of each prompt)
    completion_ids: torch.Tensor  # [B, L]
    completion_mask: torch.Tensor  # [B, L] 1 up to and including the stop token
    texts: list[str]  # B decoded completions
    old_logp: torch.Tensor | None = None  # [B, L] log π_old of the completion tokens
    ref_logp: torch.Tensor | None = None  # [B, L] log π_ref, when a KL term is on

    @property
    def size(self) -> int:
        return len(self.texts)


class RolloutBackend(ABC):
    def sync(self, model: Any, step: int) -> None:
        """Called before every rollout with the policy being trained; engines that hold their own copy
        of the weights (vLLM) load them here. The HF backend generates with ``model`` itself."""

    @abstractmethod
    def complete(self, model: Any, encoder: ChatEncoder, prompt_batch: dict[str, torch.Tensor],
                 max_new_tokens: int, temperature: float,
                 samples: Sequence[dict[str, Any]] | None = None) -> torch.Tensor:
        """Completion token ids [B, L] for a left-padded prompt batch (pad after a stop token);
        ``samples`` are the B schema rows behind it (engines that build their own prompts use them)."""


class HFGenerateBackend(RolloutBackend):
    """``model.generate`` with sampling from the full distribution at ``temperature``."""

    def __init__(self, top_k: int = 0, top_p: float = 1.0):
        self.top_k, self.top_p = top_k, top_p

    def complete(self, model: Any, encoder: ChatEncoder, prompt_batch: dict[str, torch.Tensor],
                 max_new_tokens: int, temperature: float,
                 samples: Sequence[dict[str, Any]] | None = None) -> torch.Tensor:
        sampling = {"top_k": self.top_k, "top_p": self.top_p} if temperature > 0 else {}
        return generate_batch(model, encoder, prompt_batch, max_new_tokens, temperature, sampling)


def stop_ids(model: Any, encoder: ChatEncoder) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return sorted({int(i) for i in ids} | {int(encoder.tokenizer.eos_token_id)})


@torch.no_grad()
def rollout(model: Any, backend: RolloutBackend, encoder: ChatEncoder, samples: Sequence[dict[str, Any]],
            group_size: int, max_new_tokens: int, temperature: float) -> Rollout:
    """G completions per prompt. Prompts are encoded once and repeated G times."""
    device = next(model.parameters()).device
    encoded = [encoder.encode_prompt(s) for s in samples]
    feats = [f for f in encoded for _ in range(group_size)]  # [B] prompt i at rows i·G … i·G+G−1
    batch = {k: v.to(device) for k, v in collate(feats, encoder.tokenizer.pad_token_id, "left").items()}
    was_training = model.training
    model.eval()
    try:
        rows = [s for s in samples for _ in range(group_size)]  # [B]
        ids = backend.complete(model, encoder, batch, max_new_tokens, temperature, samples=rows).cpu()  # [B, L]
    finally:
        model.train(was_training)
    mask = completion_mask(ids, stop_ids(model, encoder))  # [B, L]
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, encoder.tokenizer.pad_token_id))
    texts = encoder.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return Rollout(list(samples), group_size, feats, ids, mask, texts)


def sequence_inputs(prompt_feats: Sequence[dict[str, torch.Tensor]], completion_ids: torch.Tensor,
                    completion_mask: torch.Tensor, pad_id: int) -> dict[str, torch.Tensor]:
    """Model inputs for ``[left-padded prompt | completion]`` on the CPU: input_ids/attention_mask
    [b, T+L], token-aligned fields extended with zeros, image tensors concatenated. The completion
    tensors may be on any device."""
    inputs = collate(list(prompt_feats), pad_id, "left")
    b, length = completion_ids.shape
    inputs["input_ids"] = torch.cat([inputs["input_ids"], completion_ids.cpu()], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], completion_mask.cpu().to(torch.long)], dim=1)
    for k in token_keys(prompt_feats[0]):
        inputs[k] = torch.cat([inputs[k], torch.zeros((b, length), dtype=inputs[k].dtype)], dim=1)
    return inputs


def completion_logits(model: Any, inputs: dict[str, torch.Tensor], length: int) -> torch.Tensor:
    """Logits [b, L, V] that predict the L completion tokens (the images go in too). Holds the whole
    [b, L, V]: the unchunked reference of :func:`logprobs_and_entropy` (tests, benchmarks)."""
    device = next(model.parameters()).device
    out = model(**{k: v.to(device) for k, v in inputs.items()}, logits_to_keep=length + 1, use_cache=False)
    return out.logits[:, :-1]  # position t predicts token t+1


def logprobs_and_entropy(model: Any, prompt_feats: Sequence[dict[str, torch.Tensor]], completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, pad_id: int, temperature: float = 1.0,
                         with_entropy: bool = False, chunk_size: int = 256,
                         batch_size: int | None = None,
                         suppress_ids: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(completion tokens) [b, L] (fp32, differentiable when grads are on) and, optionally,
    the policy's token entropy [b, L] in nats; both 0 where ``completion_mask`` [b, L] is 0.

    One forward of ``[prompt | completion]`` up to the last hidden states, then the output head
    ``chunk_size`` positions at a time (:func:`egt.rl.functional.chunked_token_logprobs`), so no
    [b, L, V] tensor is held, with or without gradients. ``batch_size`` (no-grad calls only: the
    π_old and π_ref passes) runs the rows in micro-batches of that many sequences; None = all at
    once. ``suppress_ids``: tokens the rollout could not sample (the vision placeholders), left out
    of the normaliser so the first PPO epoch is exactly on-policy. Results are on the model's device. Raises ValueError for ``batch_size`` < 1 or a
    micro-batch request with gradients on (the gradient pass's size is ``rl.num_mini_batches``).
    """
    b, length = completion_ids.shape
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"rl.logprob_batch_size must be >= 1 or null, got {batch_size}")
    if batch_size is not None and batch_size < b:
        if torch.is_grad_enabled():
            raise ValueError("micro-batched log-probs are for no-grad passes; split the gradient pass with "
                             "rl.num_mini_batches")
        parts = [logprobs_and_entropy(model, prompt_feats[s:s + batch_size], completion_ids[s:s + batch_size],
                                      completion_mask[s:s + batch_size], pad_id, temperature, with_entropy,
                                      chunk_size, suppress_ids=suppress_ids) for s in range(0, b, batch_size)]
        logp = torch.cat([p[0] for p in parts])
        return logp, (torch.cat([p[1] for p in parts]) if with_entropy else None)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in sequence_inputs(prompt_feats, completion_ids, completion_mask,
                                                          pad_id).items()}
    hidden, head = last_hidden_and_head(model, inputs)  # [b, T+L, H]
    T = hidden.shape[1] - length
    return chunked_token_logprobs(hidden[:, T - 1:T + length - 1], head, completion_ids.to(device), temperature,
                                  mask=completion_mask, chunk=chunk_size, with_entropy=with_entropy,
                                  suppress_ids=suppress_ids)
