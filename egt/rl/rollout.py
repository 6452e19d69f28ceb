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

import inspect
import itertools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import transformers

from egt.choices import shared_prompt_mode
from egt.data.encode import ChatEncoder, collate, token_keys
from egt.distributed import GenerationPath, gathered_for_generation, world_size
from egt.eval.generation import generate_batch
from egt.probe.probe import last_hidden_and_head
from egt.rl.functional import chunked_token_logprobs, completion_mask

log = logging.getLogger(__name__)


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
    generation: GenerationPath | None = None  # how the policy generated (egt.distributed.gathered_for_generation)

    @property
    def size(self) -> int:
        return len(self.texts)


class RolloutBackend(ABC):
    #: does :meth:`complete` run ``model`` itself (then ZeRO-3 gathers it for the call, ``rl.gather_for_generation``)?
    #: False for engines with their own copy of the weights (vLLM): their path is logged as ``engine``.
    generates_with_policy: bool = True

    def sync(self, model: Any, step: int) -> None:
        """Called before every rollout with the policy being trained; engines that hold their own copy
        of the weights (vLLM) load them here. The HF backend generates with ``model`` itself."""

    @abstractmethod
    def complete(
        self,
        model: Any,
        encoder: ChatEncoder,
        prompt_batch: dict[str, torch.Tensor],
        max_new_tokens: int,
        temperature: float,
        samples: Sequence[dict[str, Any]] | None = None,
        synced_gpus: bool = False,
    ) -> torch.Tensor:
        """Completion token ids [B, L] for a left-padded prompt batch (pad after a stop token);
        ``samples`` are the B schema rows behind it (engines that build their own prompts use them).
        ``synced_gpus`` (passed only to backends that generate with the policy): the policy is ZeRO-3-
        partitioned across several ranks, each forward an all-gather every rank must join, so a rank whose
        sequences have all stopped keeps running forwards until every rank's have (transformers'
        ``generate(synced_gpus=True)``); otherwise the ranks' collectives fall out of step and hang."""


class HFGenerateBackend(RolloutBackend):
    """``model.generate`` with sampling from the full distribution at ``temperature``."""

    def __init__(self, top_k: int = 0, top_p: float = 1.0):
        self.top_k, self.top_p = top_k, top_p

    def complete(
        self,
        model: Any,
        encoder: ChatEncoder,
        prompt_batch: dict[str, torch.Tensor],
        max_new_tokens: int,
        temperature: float,
        samples: Sequence[dict[str, Any]] | None = None,
        synced_gpus: bool = False,
    ) -> torch.Tensor:
        sampling = {"top_k": self.top_k, "top_p": self.top_p} if temperature > 0 else {}
        return generate_batch(
            model, encoder, prompt_batch, max_new_tokens, temperature, sampling, synced_gpus=synced_gpus
        )


def stop_ids(model: Any, encoder: ChatEncoder) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return sorted({int(i) for i in ids} | {int(encoder.tokenizer.eos_token_id)})


@torch.no_grad()
def rollout(
    model: Any,
    backend: RolloutBackend,
    encoder: ChatEncoder,
    samples: Sequence[dict[str, Any]],
    group_size: int,
    max_new_tokens: int,
    temperature: float,
    gather: bool = True,
    engine: Any = None,
) -> Rollout:
    """G completions per prompt. Prompts are encoded once and repeated G times.

    Under ZeRO-3 with ``gather`` (``rl.gather_for_generation``) the policy's parameters are gathered once
    for the batch's generation and DeepSpeed's per-module hooks on ``engine`` (the DeepSpeed engine) are
    lifted meanwhile (:func:`egt.distributed.gathered_for_generation`); the path taken is ``Rollout.generation``."""
    device = next(model.parameters()).device
    encoded = [encoder.encode_prompt(s) for s in samples]
    feats = [f for f in encoded for _ in range(group_size)]  # [B] prompt i at rows i·G … i·G+G−1
    batch = {k: v.to(device) for k, v in collate(feats, encoder.tokenizer.pad_token_id, "left").items()}
    was_training = model.training
    model.eval()
    try:
        rows = [s for s in samples for _ in range(group_size)]  # [B]
        if backend.generates_with_policy:
            with gathered_for_generation(model, gather, engine) as path:
                # partitioned on several ranks: every rank runs as many forwards as the longest (see complete)
                synced = path.name == "partitioned" and world_size() > 1
                ids = backend.complete(
                    model,
                    encoder,
                    batch,
                    max_new_tokens,
                    temperature,
                    samples=rows,
                    **({"synced_gpus": True} if synced else {}),
                )  # [B, L]
        else:
            path = GenerationPath("engine")
            ids = backend.complete(model, encoder, batch, max_new_tokens, temperature, samples=rows)
        ids = ids.cpu()
    finally:
        model.train(was_training)
    mask = completion_mask(ids, stop_ids(model, encoder))  # [B, L]
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, encoder.tokenizer.pad_token_id))
    texts = encoder.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return Rollout(list(samples), group_size, feats, ids, mask, texts, generation=path)


def sequence_inputs(
    prompt_feats: Sequence[dict[str, torch.Tensor]],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    pad_id: int,
) -> dict[str, torch.Tensor]:
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


def logprobs_and_entropy(
    model: Any,
    prompt_feats: Sequence[dict[str, torch.Tensor]],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    pad_id: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 256,
    batch_size: int | None = None,
    suppress_ids: Sequence[int] = (),
    shared_prompt: bool | str = False,
    packing: bool = False,
    packing_max_tokens: int | None = None,
    counts: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(completion tokens) [b, L] (fp32, differentiable when grads are on) and, optionally,
    the policy's token entropy [b, L] in nats; both 0 where ``completion_mask`` [b, L] is 0.

    One forward of ``[prompt | completion]`` up to the last hidden states, then the output head
    ``chunk_size`` positions at a time (:func:`egt.rl.functional.chunked_token_logprobs`), so no
    [b, L, V] tensor is held, with or without gradients. ``batch_size`` (no-grad calls only: the
    π_old and π_ref passes) runs the rows in micro-batches of that many sequences; None = all at
    once. ``suppress_ids``: tokens the rollout could not sample (the vision placeholders), left out
    of the normaliser so the first PPO epoch is exactly on-policy. ``shared_prompt`` (``rl.shared_prompt_pass``,
    :func:`shared_prompt_mode`): rows that repeat their predecessor's prompt (a GRPO group) share one prompt
    pass — ``"cache"`` (or True) with a KV cache (:func:`shared_prompt_hidden`), ``"packed"`` as one row per
    group under a 4D mask (:func:`packed_prompt_hidden`, which also runs under activation checkpointing);
    False: every row whole. ``packing`` (``rl.packing``, with ``shared_prompt`` packed or False): padding-free
    rows, each group (packed) or sequence (False) at its real length, several up to ``packing_max_tokens``
    per row (:func:`egt.rl.packing.packed_hidden`). The same numbers to fp32 rounding either way. ``counts``
    (an :class:`egt.rl.packing.PassTokens`) gets the real and computed language-model positions of the
    pass. Results are on the model's device. Raises ValueError for ``batch_size`` < 1, a micro-batch request
    with gradients on (the gradient pass's size is ``rl.num_mini_batches``), or ``packing`` with the cache.
    """
    b, length = completion_ids.shape
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"rl.logprob_batch_size must be >= 1 or null, got {batch_size}")
    if batch_size is not None and batch_size < b:
        if torch.is_grad_enabled():
            raise ValueError(
                "micro-batched log-probs are for no-grad passes; split the gradient pass with rl.num_mini_batches"
            )
        parts = [
            logprobs_and_entropy(
                model,
                prompt_feats[s : s + batch_size],
                completion_ids[s : s + batch_size],
                completion_mask[s : s + batch_size],
                pad_id,
                temperature,
                with_entropy,
                chunk_size,
                suppress_ids=suppress_ids,
                shared_prompt=shared_prompt,
                packing=packing,
                packing_max_tokens=packing_max_tokens,
                counts=counts,
            )
            for s in range(0, b, batch_size)
        ]
        logp = torch.cat([p[0] for p in parts])
        return logp, (torch.cat([p[1] for p in parts]) if with_entropy else None)
    device = next(model.parameters()).device
    mode = shared_prompt_mode(shared_prompt)
    if packing and mode == "cache":
        raise ValueError("rl.packing=true packs rl.shared_prompt_pass=packed or false, not the KV-cache path")
    shared = None
    if packing:
        from egt.rl.packing import packed_hidden

        args = (model, prompt_feats, completion_ids, completion_mask, pad_id)
        shared = packed_hidden(*args, mode == "packed", packing_max_tokens, counts)
        counts = None if shared is not None else counts  # counted there
    if shared is None:
        shared = (
            shared_prompt_hidden(model, prompt_feats, completion_ids, completion_mask, pad_id)
            if mode == "cache"
            else packed_prompt_hidden(model, prompt_feats, completion_ids, completion_mask, pad_id)
            if mode == "packed"
            else None
        )
        if counts is not None and shared is not None:
            counts.add(*_shared_pass_tokens(prompt_feats, completion_mask, mode))
    if shared is not None:
        hidden, head = shared  # [b, L, H]: the states that predict the L completion tokens
    else:
        inputs = {
            k: v.to(device) for k, v in sequence_inputs(prompt_feats, completion_ids, completion_mask, pad_id).items()
        }
        if counts is not None:
            counts.add(int(inputs["attention_mask"].sum()), inputs["input_ids"].numel())
        hidden, head = last_hidden_and_head(model, inputs)  # [b, T+L, H]
        T = hidden.shape[1] - length
        hidden = hidden[:, T - 1 : T + length - 1]
    return chunked_token_logprobs(
        hidden,
        head,
        completion_ids.to(device),
        temperature,
        mask=completion_mask,
        chunk=chunk_size,
        with_entropy=with_entropy,
        suppress_ids=suppress_ids,
    )


def _shared_pass_tokens(
    prompt_feats: Sequence[dict[str, torch.Tensor]], completion_mask: torch.Tensor, mode: str
) -> tuple[int, int]:
    """(real, computed) language-model positions of a shared prompt pass: P prompts once, the completions'
    real tokens; computed P·T + b·L (cache) or P·(T + G·L) (packed, G the largest group)."""
    runs = prompt_runs(prompt_feats)
    starts = [0, *itertools.accumulate(runs[:-1])]
    lengths = [len(prompt_feats[s]["input_ids"]) for s in starts]
    b, length = completion_mask.shape
    real = sum(lengths) + int(completion_mask.sum())
    computed = len(runs) * max(lengths) + (b * length if mode == "cache" else len(runs) * max(runs) * length)
    return real, computed


def prompt_runs(prompt_feats: Sequence[dict[str, torch.Tensor]]) -> list[int]:
    """Lengths of the runs of consecutive rows that share one prompt: the same features object, as
    :func:`rollout` repeats each prompt's G times (``[a, a, b, b, b] → [2, 3]``)."""
    runs: list[int] = []
    for i, f in enumerate(prompt_feats):
        if i and f is prompt_feats[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def _shared_prompt_unsupported(model: Any, feats: dict[str, torch.Tensor]) -> str | None:
    """Why :func:`shared_prompt_hidden` cannot run on ``model`` (None: it can)."""
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "get_rope_index") or model.get_output_embeddings() is None:
        return f"{type(model).__name__} has no Qwen2-VL-style base model (get_rope_index) and output head"
    if "mm_token_type_ids" not in feats or "mm_token_type_ids" not in inspect.signature(base.get_rope_index).parameters:
        return (
            "no mm_token_type_ids from the processor or in get_rope_index (transformers before 5.x's multimodal RoPE)"
        )
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.2x; before: is_gradient_…
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if checkpointing and model.training and torch.is_grad_enabled():
        return "gradient checkpointing drops the KV cache in a gradient pass"
    if checkpointing and model.training and not _cache_kept_without_grad():
        return (
            f"transformers {transformers.__version__} drops the KV cache under gradient checkpointing even without "
            "gradients (5.24 keeps it)"
        )
    return None


def _cache_kept_without_grad() -> bool:
    """Does the installed transformers keep ``use_cache`` under gradient checkpointing when no gradient is
    taken? 5.24.0 added ``torch.is_grad_enabled()`` to that condition (``utils/generic.py``, the ``use_cache``
    handling; checked in the 5.20.2–5.24.0 wheels); before, a training-mode model with checkpointing on
    always ran without a cache (e.g. 5.20.2, which the ``vllm`` extra's environment resolves to)."""
    from packaging.version import Version

    return Version(transformers.__version__).release >= (5, 24)


_warned: set[str] = set()


def _shared_runs(model: Any, prompt_feats: Sequence[dict[str, torch.Tensor]], unsupported: Any, option: str):
    """The runs of rows sharing a prompt (:func:`prompt_runs`), or None where sharing cannot help (no prompt
    repeats) or ``unsupported(model, feats)`` gives a reason, logged once per reason under ``option``."""
    runs = prompt_runs(prompt_feats)
    if len(runs) == len(prompt_feats):
        return None
    why = unsupported(model, prompt_feats[0])
    if why is not None:
        if why not in _warned:
            _warned.add(why)
            log.info("%s: running every row whole (%s)", option, why)
        return None
    return runs


def shared_prompt_hidden(
    model: Any,
    prompt_feats: Sequence[dict[str, torch.Tensor]],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    pad_id: int,
) -> tuple[torch.Tensor, Any] | None:
    """The hidden states that predict the completion tokens, [b, L, H], and the output head, with each
    prompt (and its image) run **once per group** instead of once per completion; None (nothing run)
    when no row repeats its predecessor's prompt or the model cannot (logged once).

    The P distinct prompts (runs of :func:`prompt_runs`) go through the base model with a KV cache;
    the cache is indexed out to the b rows (differentiable: gradients of every completion flow back
    into its prompt's keys and values) and the b completions run on it. Positions are the model's
    own multimodal RoPE indices (``get_rope_index``) of ``[prompt | completion]``, the same as the
    full pass computes, so the result equals the full pass's to fp32 rounding (tests:
    tests/unit/rl/test_shared_prompt.py). Completion positions after a row's stop token are masked
    and come last, so they change nothing before them.

    Saves (G − 1)/G of the prompt tokens' work in every log-prob pass (prompt length T, completion L:
    a pass costs ~P·T + b·L token-forwards instead of b·(T + L)); at the paper's scale (about 1,225
    image tokens per prompt, G = 4–8) that is most of the pass. The same idea as Prefix Grouper
    (Liu et al., 2025, "Prefix Grouper: Efficient GRPO Training through Shared-Prefix Forward"),
    done here with transformers' KV cache instead of a custom attention. Departs from TRL / verl,
    which run every (prompt, completion) row whole.

    Supported: Qwen2-VL-family models in transformers 5.x (a base model with ``get_rope_index`` and
    ``mm_token_type_ids`` from the processor). Not in a gradient pass under gradient checkpointing
    (transformers drops the cache there): the caller then runs the full pass.
    """
    runs = _shared_runs(model, prompt_feats, _shared_prompt_unsupported, "rl.shared_prompt_pass")
    if runs is None:
        return None
    from transformers import DynamicCache

    base, head = model.model, model.get_output_embeddings()
    device = next(model.parameters()).device
    starts = [0, *itertools.accumulate(runs[:-1])]  # first row of each run
    prompts = collate([prompt_feats[s] for s in starts], pad_id, "left")
    prompts = {k: v.to(device) for k, v in prompts.items()}
    P, T = prompts["input_ids"].shape
    b, length = completion_ids.shape
    positions = _prompt_completion_positions(base, prompts, length)  # [3, P, T+L]
    cache = DynamicCache(config=base.config)
    kw = {_cache_kwarg(base): cache, "use_cache": True}  # transformers renamed past_key_values → cache in 5.2x
    out = base(**prompts, position_ids=positions[:, :, :T], **kw)
    _check_cache(cache, T, "the prompt pass")
    rows = torch.repeat_interleave(torch.arange(P, device=device), torch.tensor(runs, device=device))  # [b]
    cache.batch_select_indices(rows)  # [P, …, T, d] → [b, …, T, d]
    mask = torch.cat([prompts["attention_mask"][rows], completion_mask.to(device, prompts["attention_mask"].dtype)], 1)
    done = base(
        input_ids=completion_ids.to(device), attention_mask=mask, position_ids=positions[:, rows, T:], **kw
    ).last_hidden_state  # [b, L, H]
    _check_cache(cache, T + length, "the completion pass")
    return torch.cat([out.last_hidden_state[rows, -1:], done[:, :-1]], 1), head


def _prompt_completion_positions(base: Any, prompts: dict[str, torch.Tensor], length: int) -> torch.Tensor:
    """The model's own multimodal RoPE positions [3, P, T+L] of ``[left-padded prompt | L completion tokens]``
    (``get_rope_index``; 0 on the prompt's left padding): what the full pass computes for these rows, the
    completion's text positions continuing from max(prompt positions) + 1 on all three axes."""
    P, T = prompts["input_ids"].shape
    ones = torch.ones((P, length), dtype=prompts["attention_mask"].dtype, device=prompts["input_ids"].device)
    rope_kw = {k: prompts[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in prompts}
    positions, _ = base.get_rope_index(
        input_ids=torch.cat([prompts["input_ids"], torch.zeros_like(ones, dtype=prompts["input_ids"].dtype)], 1),
        mm_token_type_ids=torch.cat(
            [prompts["mm_token_type_ids"], torch.zeros_like(ones, dtype=prompts["mm_token_type_ids"].dtype)], 1
        ),
        attention_mask=torch.cat([prompts["attention_mask"], ones], 1),
        **rope_kw,
    )
    return positions


# attention implementations the packed passes run under: sdpa / eager apply the 4D mask as given; egt_varlen takes
# the layout itself (egt.models.attention.PrefixGroups: prefix-grouped varlen sequences, no mask)
PACKED_ATTENTION = ("sdpa", "eager", "egt_varlen")


def _packed_prompt_unsupported(model: Any, feats: dict[str, torch.Tensor]) -> str | None:
    """Why :func:`packed_prompt_hidden` cannot run on ``model`` (None: it can). Unlike the cache path,
    gradient checkpointing is no reason: the packed row needs no cache."""
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "get_rope_index") or model.get_output_embeddings() is None:
        return f"{type(model).__name__} has no Qwen2-VL-style base model (get_rope_index) and output head"
    if "mm_token_type_ids" not in feats or "mm_token_type_ids" not in inspect.signature(base.get_rope_index).parameters:
        return (
            "no mm_token_type_ids from the processor or in get_rope_index (transformers before 5.x's multimodal RoPE)"
        )
    text = getattr(base, "language_model", base)
    attn = getattr(text.config, "_attn_implementation", None)
    if attn not in PACKED_ATTENTION:
        return (
            f"attention implementation {attn!r} takes neither a custom 4D mask as given nor egt's prefix groups "
            f"(packed needs one of {list(PACKED_ATTENTION)})"
        )
    return None


def packed_layout(
    runs: Sequence[int], prompt_mask: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each completion goes in the packed rows, and who may attend to whom.

    Row p (one per group of ``runs[p]`` rows) is ``[prompt_p | completion_1 | … | completion_G | tail]``
    of width S = T + G·L with G = max(runs): the left-padded prompt in columns 0 … T−1, member k of the
    group (0-based) in columns T + k·L … T + k·L + L − 1, and an unused tail where a group has fewer
    than G members.

    prompt_mask: [P, T] (1 on prompt tokens), completion_mask: [b, L] (1 up to the stop token) →
    cols [b, L] (the packed column of each completion token), rows [b] (its packed row),
    allowed [P, S, S] bool (query, key): key is a real token (not padding, not the tail), key ≤ query,
    and key in the prompt or in the query's own completion — so the prompt is causal and each completion
    sees the whole prompt and its own past, never another completion. The diagonal is always allowed,
    so no query row is empty (padding queries' outputs are never read).

    >>> cols, rows, allowed = packed_layout([2], torch.tensor([[0, 1]]), torch.tensor([[1, 1], [1, 0]]))
    >>> cols.tolist(), rows.tolist()
    ([[2, 3], [4, 5]], [0, 0])
    >>> allowed[0].int()  # columns: pad, prompt, c1, c1, c2, c2 (the last is padding after c2's stop)
    tensor([[1, 0, 0, 0, 0, 0],
            [0, 1, 0, 0, 0, 0],
            [0, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 1, 0, 0, 1, 0],
            [0, 1, 0, 0, 1, 1]], dtype=torch.int32)
    """
    cols, rows, seg, real = _group_columns(runs, prompt_mask, completion_mask)
    return cols, rows, _allowed(seg, real)


def _allowed(seg: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """[P, S, S] bool (query, key) from :func:`_group_columns`' ``seg`` / ``real``: see :func:`packed_layout`."""
    S, device = seg.shape[1], seg.device
    idx = torch.arange(S, device=device)
    causal = idx[:, None] >= idx[None, :]  # [S, S] query ≥ key
    same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])  # [P, S, S] prompt key or own segment
    return (real[:, None, :] & causal[None] & same) | torch.eye(S, dtype=torch.bool, device=device)[None]


def _group_columns(
    runs: Sequence[int], prompt_mask: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`packed_layout`'s columns: ``cols`` [b, L], ``rows`` [b], and per packed token ``seg`` [P, S] (0 the
    prompt, k + 1 completion k, −1 the tail) and ``real`` [P, S] (a prompt or completion token, not padding)."""
    P, T = prompt_mask.shape
    b, length = completion_mask.shape
    device = prompt_mask.device
    runs_t = torch.tensor(list(runs), device=device)
    G = int(runs_t.max())
    S = T + G * length
    rows = torch.repeat_interleave(torch.arange(P, device=device), runs_t)  # [b]
    first = torch.cumsum(runs_t, 0) - runs_t  # [P] first row of each group
    member = torch.arange(b, device=device) - first[rows]  # [b] k within its group
    cols = T + member[:, None] * length + torch.arange(length, device=device)[None]  # [b, L]
    seg = torch.full((P, S), -1, dtype=torch.long, device=device)  # 0 prompt, k+1 completion k, -1 tail
    seg[:, :T] = 0
    seg[rows[:, None], cols] = member[:, None] + 1
    real = torch.zeros((P, S), dtype=torch.bool, device=device)
    real[:, :T] = prompt_mask.bool()
    real[rows[:, None], cols] = completion_mask.to(device).bool()
    return cols, rows, seg, real


def packed_attention(
    base: Any, unit: torch.Tensor, part: torch.Tensor, allowed: Callable[[], torch.Tensor]
) -> tuple[dict[str, Any], str]:
    """The attention arguments of a packed pass over rows of units (``unit`` [R, W]: a token's unit, −1 for
    padding; ``part`` [R, W]: 0 the unit's prompt, k the unit's completion k) and the implementation's name:
    under ``egt_varlen`` the prefix-grouped varlen sequences (:func:`egt.models.attention.prefix_groups`; no
    mask is built), else the 4D mask of ``allowed()`` ([R, W, W] bool, query × key) as the implementation
    takes it (:func:`mask_4d`)."""
    attn = getattr(base, "language_model", base).config._attn_implementation
    if attn == "egt_varlen":
        from egt.models.attention import prefix_groups

        device = base.get_input_embeddings().weight.device
        return {"attention_mask": None, "egt_prefix_groups": prefix_groups(unit, part, device)}, attn
    mask4, attn = mask_4d(base, allowed())
    return {"attention_mask": mask4}, attn


def mask_4d(base: Any, allowed: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``allowed`` [R, S, S] bool (query, key) as the 4D mask [R, 1, S, S] the base model's attention takes
    as given (sdpa: bool, True = attend; eager: additive 0 / dtype min), and the implementation's name."""
    attn = getattr(base, "language_model", base).config._attn_implementation
    if attn == "sdpa":
        return allowed[:, None], attn
    dtype = base.get_input_embeddings().weight.dtype
    mask4 = torch.zeros(allowed[:, None].shape, dtype=dtype, device=allowed.device)
    return mask4.masked_fill_(~allowed[:, None], torch.finfo(dtype).min), attn


def packed_prompt_hidden(
    model: Any,
    prompt_feats: Sequence[dict[str, torch.Tensor]],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    pad_id: int,
) -> tuple[torch.Tensor, Any] | None:
    """:func:`shared_prompt_hidden`'s result — the hidden states that predict the completion tokens,
    [b, L, H], and the output head — from **one row per group**, ``[prompt | completion_1 | … |
    completion_G]``, under a 4D attention mask and explicit positions, with no KV cache; so it runs under
    activation checkpointing in the gradient pass, where the cache path cannot. None (nothing run) when no
    row repeats its predecessor's prompt or the model cannot (logged once; the caller runs every row whole).

    Layout and mask: :func:`packed_layout` (prompt causal; completion k sees the whole prompt and its own
    past only; the padding after each completion's stop token and the tail of a short group masked as keys).
    Positions: completion k's are those of the unshared row ``[prompt | completion_k]`` (the model's
    ``get_rope_index``, 3 × [P, T+L]: a completion's text positions continue from max(prompt positions) + 1
    on all three axes), so every completion token sees the same keys at the same positions as in the full
    pass: the same numbers to fp32 rounding (tests/unit/rl/test_shared_prompt_packed.py, gradients
    included, with gradient checkpointing on). The mask goes in as transformers' own mask functions make
    it for the implementation (masking_utils ``sdpa_mask`` / ``eager_mask``, transformers 5.25.0): bool
    (True = attend) for sdpa, additive (0 / dtype min) for eager; ``create_causal_mask`` returns a 4D mask
    as given (``_preprocess_mask_arguments``). Under ``egt_varlen`` no mask is built: the same layout goes to
    the attention as prefix-grouped varlen sequences (:func:`packed_attention`,
    :func:`egt.models.attention.prefix_groups`). flash_attention_* ignore a custom mask: the model falls back.

    Read-out: the prompt's last hidden state (column T − 1) predicts the first token of every completion of
    the group — computed once in the row, gathered for each of the G rows (its gradient sums over them);
    completion k's token j (j ≥ 1) is predicted from column T + k·L + j − 1. The hidden states, not logits,
    come back (``logits_to_keep`` cannot select per-row columns): the caller applies the head in chunks
    (:func:`egt.rl.functional.chunked_token_logprobs`), so no [b, L, V] tensor is held.

    Cost: a row of S = T + G·L tokens per group instead of G rows of T + L, so the linear layers do
    P·(T + G·L) token-forwards instead of b·(T + L) (the cache path's count); the attention is dense over
    S² per row under sdpa / eager (the mask does not skip work in sdpa's math / memory-efficient kernels),
    so at long completions it costs more attention than the full pass; under egt_varlen it is split as
    Prefix Grouper splits it (Liu et al., 2025, "Prefix Grouper: Efficient GRPO Training through
    Shared-Prefix Forward"): n_p² + Σ_k n_k (n_p + n_k) per group. Supported: Qwen2-VL-family models in
    transformers 5.x with sdpa, eager or egt_varlen attention.
    """
    runs = _shared_runs(model, prompt_feats, _packed_prompt_unsupported, "rl.shared_prompt_pass=packed")
    if runs is None:
        return None
    base, head = model.model, model.get_output_embeddings()
    device = next(model.parameters()).device
    starts = [0, *itertools.accumulate(runs[:-1])]
    prompts = {k: v.to(device) for k, v in collate([prompt_feats[s] for s in starts], pad_id, "left").items()}
    P, T = prompts["input_ids"].shape
    b, length = completion_ids.shape
    positions = _prompt_completion_positions(base, prompts, length)  # [3, P, T+L]
    cols, rows, seg, real = _group_columns(runs, prompts["attention_mask"], completion_mask.to(device))
    S = seg.shape[1]
    per_token = token_keys(prompt_feats[0])
    inputs = {k: v for k, v in prompts.items() if k not in ("input_ids", "attention_mask", *per_token)}
    ids = torch.full((P, S), pad_id, dtype=prompts["input_ids"].dtype, device=device)
    ids[:, :T] = prompts["input_ids"]
    ids[rows[:, None], cols] = completion_ids.to(device, ids.dtype)
    for k in per_token:  # mm_token_type_ids …: 0 (text) on the completions
        inputs[k] = torch.zeros((P, S), dtype=prompts[k].dtype, device=device)
        inputs[k][:, :T] = prompts[k]
    pos = torch.zeros((3, P, S), dtype=positions.dtype, device=device)
    pos[:, :, :T] = positions[:, :, :T]
    pos[:, rows[:, None], cols] = positions[:, rows, T:]  # [3, b, L]: each completion as in its own row
    unit = torch.where(real, torch.arange(P, device=device)[:, None], -1)  # [P, S] the group (row) of each token
    attention, attn = packed_attention(base, unit, seg.clamp(min=0), lambda: _allowed(seg, real))
    said = f"packed {attn}"
    if said not in _warned:  # once: which path the passes take (the fallback says so too)
        _warned.add(said)
        log.info(
            "rl.shared_prompt_pass=packed: one row per group (%d rows of %d tokens for %d completions, %s)",
            P,
            S,
            b,
            attn,
        )
    hidden = base(input_ids=ids, position_ids=pos, use_cache=False, **attention, **inputs).last_hidden_state
    src = torch.cat([torch.full((b, 1), T - 1, dtype=cols.dtype, device=device), cols[:, :-1]], 1)  # [b, L]
    return hidden[rows[:, None], src], head  # [b, L, H]


def _cache_kwarg(base: Any) -> str:
    """The name the base model's forward takes its KV cache by: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (before)."""
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _check_cache(cache: Any, expected: int, where: str) -> None:
    """A cache the model did not fill would leave the completions attending to nothing: fail loudly."""
    got = cache.get_seq_length()
    if got != expected:
        raise RuntimeError(
            f"rl.shared_prompt_pass: after {where} the KV cache holds {got} positions, not "
            f"{expected}: this transformers version does not fill the cache it was given; set "
            "rl.shared_prompt_pass=false"
        )
