"""Batched judge generation and its quick scoring (format-ok, accuracy per category)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import CompileConfig, GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from egt.data.encode import ChatEncoder, collate
from egt.data.prompt import format_ok, parse_answer
from egt.models.loader import multimodal_token_ids


# Token ids a checkpoint's generation_config.json may set; everything else in it is a decoding choice
# that egt owns (Qwen2.5-VL-7B-Instruct ships do_sample, top_k 1, top_p 0.001, temperature 0.1 and
# repetition_penalty 1.05, which transformers applies to every generate() call that leaves them unset).
TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def _compiled(device: Any) -> dict[str, Any]:
    compile_config = CompileConfig()  # transformers' defaults: inductor, reduce-overhead, fullgraph False
    compile_config._compile_all_devices = torch.device(device).type == "cpu" or None
    return {"cache_implementation": "static", "compile_config": compile_config}


# generation.decode (egt.choices.Decode) → the GenerationConfig fields for a model on ``device`` (decode_fields)
DECODE: dict[str, Callable[[Any], dict[str, Any]]] = {
    "dynamic": lambda device: {},
    "static": lambda device: {"cache_implementation": "static", "disable_compile": True},
    "compiled": _compiled,
}


def decode_fields(decode: str, device: Any = "cpu") -> dict[str, Any]:
    """The ``GenerationConfig`` fields of a ``*.generation.decode`` mode (egt.choices.Decode).

    - ``dynamic``: none (transformers' default ``DynamicCache``: grows by one position a step);
    - ``static``: ``cache_implementation="static"``: a ``StaticCache`` of [B, kv_heads, T + max_new_tokens − 1,
      head_dim] per layer, allocated once per call (transformers keeps the largest length of earlier calls, so
      later batches reuse the shape), left padding masked as with the dynamic cache; ``disable_compile``,
      because transformers compiles a static-cache decode on its own on CUDA;
    - ``compiled``: the static cache + transformers' ``CompileConfig()`` (its defaults: inductor,
      ``mode="reduce-overhead"`` — CUDA graphs on a GPU —, ``fullgraph=False``): ``generate`` runs the prompt
      pass (vision tower, prefill) once through the plain model and every one-token decode step through
      ``torch.compile(model.__call__)`` (transformers 5.25 ``GenerationMixin._sample``: ``_prefill`` then
      ``get_compiled_call``; ``_valid_auto_compile_criteria``). transformers compiles only on accelerators unless
      ``CompileConfig._compile_all_devices`` is set; egt sets it on CPU, where compiling is slow and rarely
      faster but lets the exactness be tested.

    The lever is transformers' documented one ("Static kv-cache and torch.compile",
    https://huggingface.co/docs/transformers/llm_optims; ``cache_implementation="static"``). Outputs: the same
    tokens as ``dynamic`` in fp32 (tests/unit/eval/test_decode.py); compiled kernels may sum in another order, so
    a non-dynamic mode is in the probe and eval keys.

    >>> decode_fields("dynamic"), decode_fields("static")
    ({}, {'cache_implementation': 'static', 'disable_compile': True})
    """
    if str(decode) not in DECODE:
        raise ValueError(f"generation.decode={str(decode)!r}: write {', '.join(DECODE)}")
    return DECODE[str(decode)](device)


def generation_config(
    max_new_tokens: int,
    temperature: float = 0.0,
    pad_token_id: int | None = None,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    use_checkpoint_defaults: bool = False,
    suppress_ids: Sequence[int] = (),
    decode: str = "dynamic",
    device: Any = "cpu",
) -> GenerationConfig:
    """The one ``GenerationConfig`` every egt caller decodes with (probe, eval, Voting@K, RL rollouts on
    HF, the HF teacher and judge); use it through :func:`model_generate`.

    ``temperature`` 0 → greedy; > 0 → sampling at that temperature. Unset ``top_k`` / ``top_p`` /
    ``repetition_penalty`` (None) are *off* (top_k 0, top_p 1, penalty 1: the full distribution, so
    a sampled output is drawn from π/T, as the RL log-probs and the probe's entropies assume;
    transformers' own default top_k is 50). With ``use_checkpoint_defaults`` they are left unset
    instead, so the checkpoint's generation_config.json fills them. ``suppress_ids`` (the vision
    placeholder tokens) are never generated. ``decode`` (dynamic | static | compiled) picks the KV cache and
    whether the decode step is compiled (:func:`decode_fields`; ``device``: where the model is).
    """
    kw: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": pad_token_id,
        "do_sample": temperature > 0,
        "bad_words_ids": [[int(i)] for i in suppress_ids] or None,
    }
    if temperature > 0:
        kw["temperature"] = float(temperature)
    off = {"top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
    for name, value in (("top_k", top_k), ("top_p", top_p), ("repetition_penalty", repetition_penalty)):
        if value is not None:
            kw[name] = value
        elif not use_checkpoint_defaults:
            kw[name] = off[name]
    kw.update(decode_fields(decode, device))
    return GenerationConfig(**kw)


def row_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed for one row's sampling stream from the run's ``seed`` and what names the row
    (item view key, vote), so a draw does not depend on which batch, process or resume made it.

    >>> row_seed(0, "a|official", 1) == row_seed(0, "a|official", 1) != row_seed(0, "a|official", 0)
    True
    """
    digest = hashlib.sha256(repr((int(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class RowSeededSampler(LogitsProcessor):
    """Samples each row from its own ``torch.Generator`` (Gumbel-max over the warped log-probs) and
    returns a one-hot score row, so transformers' own draw from the global RNG can only pick that token.

    transformers runs custom processors after its penalties / suppressed tokens and before its
    warpers, so the temperature, top-k and top-p are applied here (the same warpers, same order);
    on a one-hot row transformers' warpers change nothing. ``argmax(log softmax(z) + Gumbel)`` is a
    draw from ``softmax(z)`` (the Gumbel-max trick), one uniform per vocabulary entry per step.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int | None, top_p: float | None) -> None:
        self.seeds = [int(s) for s in seeds]
        self.generators: list[torch.Generator] = []  # made on the logits' device at the first step
        self.warpers = [TemperatureLogitsWarper(float(temperature))]
        if top_k:
            self.warpers.append(TopKLogitsWarper(int(top_k)))
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(float(top_p)))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for w in self.warpers:
            scores = w(input_ids, scores)
        logp = torch.log_softmax(scores.float(), dim=-1)  # [B, V]
        if not self.generators:  # on the GPU the draws stay there (a CUDA stream differs from the CPU's)
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators])
        gumbel = -torch.log(-torch.log(u.clamp(min=1e-20, max=1.0 - 1e-7)))  # [B, V]
        pick = (logp + gumbel).argmax(-1, keepdim=True)  # [B, 1]
        return torch.full_like(scores, float("-inf")).scatter(-1, pick, 0.0)


def row_sampler(model: Any, config: GenerationConfig, seeds: Sequence[int]) -> RowSeededSampler:
    """The :class:`RowSeededSampler` for ``config``'s temperature / top-k / top-p (unset ones: the
    checkpoint's, as transformers would fill them under ``use_checkpoint_defaults``)."""
    own = getattr(model, "generation_config", None)

    def get(name: str) -> Any:
        value = getattr(config, name, None)
        return value if value is not None else getattr(own, name, None)

    return RowSeededSampler(seeds, get("temperature"), get("top_k"), get("top_p"))


def model_generate(
    model: Any,
    batch: dict[str, torch.Tensor],
    config: GenerationConfig,
    use_checkpoint_defaults: bool = False,
    **kw: Any,
) -> torch.Tensor:
    """``model.generate(**batch, generation_config=config)`` where nothing comes from the checkpoint's
    generation_config.json but its token ids (eos, pad, bos), unless ``use_checkpoint_defaults``.

    transformers fills every field ``config`` leaves unset from ``model.generation_config``; for the
    call, that is replaced by one holding the checkpoint's token ids alone (restored afterwards).
    Returns prompt + new ids [B, T+G]. ``kw`` go to ``generate`` (``logits_processor``).
    """
    if use_checkpoint_defaults:
        return model.generate(**batch, generation_config=config, **kw)
    own = model.generation_config
    model.generation_config = GenerationConfig(**{k: getattr(own, k, None) for k in TOKEN_FIELDS})
    try:
        return model.generate(**batch, generation_config=config, **kw)
    finally:
        model.generation_config = own


def prompt_batch(encoder: ChatEncoder, samples: Sequence[dict[str, Any]], device: Any) -> dict[str, torch.Tensor]:
    """Left-padded prompt features for ``samples`` (input_ids [B, T], attention_mask [B, T], image tensors)."""
    feats = [encoder.encode_prompt(s) for s in samples]
    return {k: v.to(device) for k, v in collate(feats, encoder.tokenizer.pad_token_id, side="left").items()}


@torch.no_grad()
def generate_batch(
    model: Any,
    encoder: ChatEncoder,
    batch: dict[str, torch.Tensor],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    sampling: Mapping[str, Any] | None = None,
    row_seeds: Sequence[int] | None = None,
    synced_gpus: bool = False,
) -> torch.Tensor:
    """Generated token ids [B, G] for one left-padded prompt batch (greedy when ``temperature`` is 0);
    rows that stopped early are filled with pad after their stop token. ``sampling``: ``top_k``,
    ``top_p``, ``repetition_penalty``, ``use_checkpoint_defaults``, ``decode`` (a stage's ``*.generation``
    config; see :func:`generation_config`). Multimodal special tokens are suppressed. ``row_seeds``
    (one per row, when sampling): each row drawn from its own stream (:class:`RowSeededSampler`),
    not from the global RNG, so a row's draw does not depend on the batch it is in. ``synced_gpus``: a
    ZeRO-3-partitioned model on several ranks (egt.rl.rollout.RolloutBackend.complete): every rank keeps
    running forwards until all ranks' sequences have stopped."""
    s = dict(sampling or {})
    checkpoint = bool(s.pop("use_checkpoint_defaults", False))
    config = generation_config(
        max_new_tokens,
        temperature,
        encoder.tokenizer.pad_token_id,
        use_checkpoint_defaults=checkpoint,
        suppress_ids=multimodal_token_ids(encoder.processor),
        device=batch["input_ids"].device,
        **s,
    )
    kw: dict[str, Any] = {"synced_gpus": True} if synced_gpus else {}
    if row_seeds is not None and temperature > 0:
        kw["logits_processor"] = [row_sampler(model, config, row_seeds)]
    seq = model_generate(model, batch, config, checkpoint, **kw)
    return seq[:, batch["input_ids"].shape[1] :]


@torch.no_grad()
def generate(
    model: Any,
    encoder: ChatEncoder,
    samples: Sequence[dict[str, Any]],
    max_new_tokens: int = 128,
    batch_size: int = 16,
    temperature: float = 0.0,
    desc: str = "generate",
    sampling: Mapping[str, Any] | None = None,
) -> list[str]:
    """One judge output per sample (left padding, multimodal special tokens suppressed)."""
    tok = encoder.tokenizer
    was_training = model.training
    model.eval()
    outs: list[str] = []
    device = next(model.parameters()).device
    try:
        for start in tqdm(range(0, len(samples), batch_size), desc=desc, dynamic_ncols=True):
            batch = prompt_batch(encoder, samples[start : start + batch_size], device)
            new = generate_batch(model, encoder, batch, max_new_tokens, temperature, sampling)
            outs += tok.batch_decode(new, skip_special_tokens=True)
    finally:
        model.train(was_training)
    return outs


def score(samples: Sequence[dict[str, Any]], outputs: Sequence[str]) -> dict[str, Any]:
    """Format-ok rate, parse failures, accuracy (parse failure counted wrong) overall and per category."""
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    fmt = fails = correct = 0
    for s, o in zip(samples, outputs):
        pred = parse_answer(o)
        ok = int(pred is not None and pred == int(s["label"]))
        fmt += format_ok(o)
        fails += pred is None
        correct += ok
        per[s.get("category") or "all"][0] += ok
        per[s.get("category") or "all"][1] += 1
    n = max(len(outputs), 1)
    out: dict[str, Any] = {
        "n": len(outputs),
        "format_ok": round(fmt / n, 4),
        "parse_failures": fails,
        "accuracy": round(correct / n, 4),
    }
    for cat, (c, t) in sorted(per.items()):
        out[f"accuracy/{cat}"] = round(c / max(t, 1), 4)
    return out
