"""Entropy probing (paper §2.3): generate, then one teacher-forced pass for exact entropies.

For every sample the model generates ``n`` outputs (greedy for n = 1, or
sampled at ``temperature``) with left padding; one forward pass over
prompt + generated tokens gives the last hidden states, and the output head
turns them into full-vocabulary entropies a chunk of positions at a time
(:mod:`egt.probe.entropy`); ``probe.entropy_from=generate`` skips that pass and
reads the same entropies from the output head while generating
(:func:`generation_entropy`; when that is exact: docs/scale.md). Per sample:
answer entropy (eq. 3) at the token that produced the answer digit, sentence
entropy (eq. 4) over the generated tokens (up to, not including, the stop
token), parsed answers, the correctness score (fraction of outputs whose answer equals the label).

With n > 1 the answer entropy is the mean over the outputs that *have* an
answer digit (+inf only when none has; ``n_no_answer`` counts the rest), the
sentence entropy the mean over all outputs.

Reasoning entropy (beyond the paper, ``entropy=sentence_fallback``): the mean
token entropy over the tokens inside ``<think>…</think>``
(:func:`egt.probe.locate.reasoning_token_range`), NaN for an output without
reasoning; with n > 1 the mean over the outputs that have reasoning.
``probe.both_orders`` (``entropy=answer_debiased``) probes each sample a second
time with its responses swapped and adds ``<column>_swapped`` (:data:`SWAPPED`).
``probe.answer_probs`` adds the probability the judge put on each answer digit at each draw's answer
token (:mod:`egt.probe.answer_probs`, :data:`ANSWER_PROB_COLUMNS`); ``probe.keep_texts`` adds ``texts``,
every draw's output (the rft stage's candidate trajectories).

Work is cut into shards of consecutive samples, each written atomically as
its own parquet file, so a killed probe resumes from its last finished shard;
:func:`shards_for_rank` splits the shard list across ranks and
:func:`merge_shards` joins them in data order. :func:`probe_rows` runs this rank's shards with the
``probe.*`` settings (the probe stage), :func:`probe_with` a whole data set with a model in memory (the
online curriculum's re-probes, :mod:`egt.select.reprobe`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from egt import distributed
from egt.data.encode import ChatEncoder
from egt.data.prompt import format_ok, parse_answer
from egt.data.schema import meta_dict, swap_sample
from egt.eval.generation import generate_batch, prompt_batch
from egt.probe.entropy import (
    answer_entropy,
    chunked_entropy_from_hidden,
    entropy_scratch,
    logits_entropy,
    sentence_entropy,
    span_entropy,
)
from egt.probe.answer_probs import answer_digit_ids, answer_prob_columns, draw_answer_probs, logprobs_at
from egt.probe.locate import answer_token_index, reasoning_token_range
from egt.utils.atomic import write_json_atomic, write_parquet_atomic
from egt.utils.conf import to_container

META_FLAGS = ("true_label", "flipped", "ambiguous", "difficulty", "kind")
# columns probe.both_orders adds as ``<name>_swapped``: the sample probed with response_1/response_2
# exchanged and the label flipped (so correct_score_swapped is about the same true answer)
SWAPPED = (
    "answer_entropy",
    "sentence_entropy",
    "reasoning_entropy",
    "n_no_answer",
    "answers",
    "correct_score",
    "output",
)
# columns probe.answer_probs adds (egt.probe.answer_probs): per draw [p("1"), p("2")] at the answer token, their
# means over the draws that have them, and the sample's source (for per-source selections: selection=bis)
ANSWER_PROB_COLUMNS = ("answer_probs", "p_answer_1", "p_label", "source")
Shard = tuple[int, int]


# ----------------------------------------------------------------- shards
def shard_ranges(n: int, shard_size: int) -> list[Shard]:
    """[start, end) ranges of consecutive samples.

    >>> shard_ranges(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def shards_for_rank(shards: Sequence[Shard], rank: int, world_size: int) -> list[Shard]:
    """The shards one rank probes (round robin, so ranks get similar work).

    >>> shards_for_rank([(0, 2), (2, 4), (4, 5)], 1, 2)
    [(2, 4)]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return list(shards[rank::world_size])


def shard_path(out_dir: Path, shard: Shard) -> Path:
    return Path(out_dir) / "shards" / f"shard-{shard[0]:08d}-{shard[1]:08d}.parquet"


def shard_seconds_path(out_dir: Path, shard: Shard) -> Path:
    """The seconds one shard took, ``{"wall", "cpu"}``: written (atomically) before its table, so a finished
    shard has them, whichever attempt computed it."""
    return shard_path(out_dir, shard).with_suffix(".seconds.json")


def shard_seconds(out_dir: Path, shards: Sequence[Shard]) -> dict[str, float] | None:
    """``{"wall", "cpu"}`` seconds summed over ``shards`` (every attempt's and rank's: what the table cost), or
    None when a shard has no record (computed before egt kept one)."""
    total = {"wall": 0.0, "cpu": 0.0}
    for shard in shards:
        path = shard_seconds_path(out_dir, shard)
        if not path.is_file():
            return None
        rec = json.loads(path.read_text())
        total = {k: total[k] + float(rec[k]) for k in total}
    return total


def merge_shards(out_dir: Path, shards: Sequence[Shard]) -> pd.DataFrame:
    """All shard tables in data order; raises if one is missing."""
    missing = [s for s in shards if not shard_path(out_dir, s).is_file()]
    if missing:
        raise FileNotFoundError(f"probe shards not finished: {missing[:5]}{'…' if len(missing) > 5 else ''}")
    frames = [pd.read_parquet(shard_path(out_dir, s)) for s in sorted(shards)]
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------- one batch
def stop_token_ids(model: Any, tok: Any) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    ids |= {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
    return ids


def generated_mask(new: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """True on generated tokens before the first stop token.  [B, G] → [B, G]"""
    stop = torch.zeros_like(new, dtype=torch.bool)
    for i in stop_ids:
        stop |= new == i
    return stop.long().cumsum(1) == 0


def last_hidden_and_head(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """Final (normed) hidden states [B, L, H] and the output head, without [B, L, V] logits."""
    head = model.get_output_embeddings()
    base = getattr(model, "model", None)
    if base is not None and head is not None:
        return base(**inputs, use_cache=False).last_hidden_state, head
    out = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1], head


@torch.no_grad()
def teacher_forced_entropy(
    model: Any, batch: dict[str, torch.Tensor], new: torch.Tensor, mask: torch.Tensor, chunk: int
) -> torch.Tensor:
    """Entropy of the distribution that produced each generated token.  → [B, G] (0 where ``mask`` is off)

    ``batch`` is the left-padded prompt batch (input_ids [B, T]), ``new`` [B, G]
    the generated ids; token j is predicted from the hidden state at T + j − 1.
    """
    hidden, head = forced_hidden(model, batch, new)  # [B, G, H]
    return chunked_entropy_from_hidden(hidden, head, mask, chunk)  # [B, G]


@torch.no_grad()
def forced_hidden(model: Any, batch: dict[str, torch.Tensor], new: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """The final hidden state that predicted each generated token [B, G, H] (one forward pass over prompt +
    ``new``), and the output head."""
    B, T = batch["input_ids"].shape
    G = new.shape[1]
    inputs = dict(batch)
    inputs["input_ids"] = torch.cat([batch["input_ids"], new], 1)  # [B, T+G]
    inputs["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(new)], 1)
    for k, v in batch.items():  # other per-token fields (mm_token_type_ids): generated tokens are text
        if k not in ("input_ids", "attention_mask") and v.dim() == 2 and v.shape == (B, T):
            inputs[k] = torch.cat([v, torch.zeros(B, G, dtype=v.dtype, device=v.device)], 1)
    hidden, head = last_hidden_and_head(model, inputs)  # [B, T+G, H]
    return hidden[:, T - 1 : T + G - 1], head


@torch.no_grad()
def generation_entropy(
    model: Any,
    encoder: ChatEncoder,
    batch: dict[str, torch.Tensor],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    sampling: dict[str, Any] | None = None,
    answer_ids: Sequence[int] = (),
) -> tuple[torch.Tensor, ...]:
    """Generated ids [B, G] and the entropy of the distribution each was drawn from [B, G], read while
    generating (``probe.entropy_from=generate``): no second pass. With ``answer_ids`` (K ids) a third
    tensor [B, G, K]: their log-probabilities under each step's full softmax of the raw logits
    (``probe.answer_probs``; only K values a step are kept).

    A forward hook on the output head sends the last position's logits of every decoding step (the raw
    model logits, before any logits processor: what ``generate(output_logits=True)`` returns) through
    :func:`egt.probe.entropy.logits_entropy`, so one [B, V] step is held at a time, never [B, G, V].
    It equals :func:`teacher_forced_entropy` up to kernel rounding (KV-cached steps against one
    full-sequence pass; ≤ 1e-5 in fp32, docs/scale.md) when the model's logits are its output head's
    output (no soft-capping or scaling after the head, as in Qwen2/2.5-VL) and generate calls the head
    once per new token (greedy or sampling; any logits processors; not assisted decoding, which scores
    several positions a call — then this raises). Rows after their stop token hold the entropy of
    whatever generate fed them (pad): the caller masks them. With ``sampling["decode"]`` static or compiled
    (:func:`egt.eval.generation.decode_fields`) the head still runs once per token: the prefill through the
    plain model, each decode step through the compiled one, where the hook runs outside the graph.
    """
    steps: list[torch.Tensor] = []
    picked: list[torch.Tensor] = []  # [B, K] a step, with answer_ids
    cols = torch.tensor(list(answer_ids), dtype=torch.long)
    scratch: list[Any] = []  # (vocab_block, buffers), made at the first step and reused by every step

    def record(module: Any, args: Any, out: torch.Tensor) -> None:
        last = out[:, -1] if out.dim() == 3 else out  # [B, V]
        if not scratch:
            scratch.extend(entropy_scratch(*last.shape, last.device))
        steps.append(logits_entropy(last, *scratch))  # [B]
        if len(cols):
            z = last.float()  # [B, V]
            picked.append(z[:, cols.to(z.device)] - torch.logsumexp(z, -1, keepdim=True))  # [B, K]

    if str((sampling or {}).get("decode", "dynamic")) == "compiled":
        # a compiled decode step (generation.decode=compiled) runs this hook eagerly: a graph break at the head,
        # so the entropy of every step is read from the head's output as in eager mode, and the compiled graph
        # does not guard on (recompile for) the growing list of steps
        record = torch.compiler.disable(record)
    handle = model.get_output_embeddings().register_forward_hook(record)
    try:
        new = generate_batch(model, encoder, batch, max_new_tokens, temperature, sampling)  # [B, G]
    finally:
        handle.remove()
    if len(steps) != new.shape[1]:
        raise RuntimeError(
            f"the output head ran {len(steps)} times for {new.shape[1]} new tokens: this model's "
            "generate does not score one position per step; use probe.entropy_from=teacher_forced"
        )
    if len(cols):
        return new, torch.stack(steps, 1), torch.stack(picked, 1)  # [B, G], [B, G], [B, G, K]
    return new, torch.stack(steps, 1)  # [B, G]


def _generate_then_score(
    model: Any,
    encoder: ChatEncoder,
    batch: dict[str, torch.Tensor],
    stops: set[int],
    max_new_tokens: int,
    temperature: float,
    sampling: dict[str, Any] | None,
    chunk: int,
    answer_ids: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """probe.entropy_from=teacher_forced: generate, then :func:`teacher_forced_entropy`.
    → new ids, generated mask, entropy [B, G] each; with ``answer_ids`` (K) their log-probs [B, G, K] where
    the generated token is one of them (:func:`egt.probe.answer_probs.logprobs_at`; NaN elsewhere), else None"""
    new = generate_batch(model, encoder, batch, max_new_tokens, temperature, sampling)  # [B, G]
    mask = generated_mask(new, stops)  # [B, G]
    if not answer_ids:
        return new, mask, teacher_forced_entropy(model, batch, new, mask, chunk), None
    hidden, head = forced_hidden(model, batch, new)  # [B, G, H]
    at = mask & torch.isin(new, torch.tensor(list(answer_ids), device=new.device))  # [B, G]
    return new, mask, chunked_entropy_from_hidden(hidden, head, mask, chunk), logprobs_at(hidden, head, at, answer_ids)


def _score_while_generating(
    model: Any,
    encoder: ChatEncoder,
    batch: dict[str, torch.Tensor],
    stops: set[int],
    max_new_tokens: int,
    temperature: float,
    sampling: dict[str, Any] | None,
    chunk: int,
    answer_ids: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """probe.entropy_from=generate: :func:`generation_entropy`.  → new, mask, entropy [B, G] (0 off the mask),
    and with ``answer_ids`` their log-probs at every step [B, G, K] (else None)"""
    new, ent, *logp = generation_entropy(model, encoder, batch, max_new_tokens, temperature, sampling, answer_ids)
    mask = generated_mask(new, stops)
    return new, mask, ent * mask, logp[0] if logp else None


# probe.entropy_from (egt.choices.EntropyFrom) → how a batch's outputs and their token entropies are made
ENTROPY_FROM = {"teacher_forced": _generate_then_score, "generate": _score_while_generating}


def _meta(sample: dict[str, Any]) -> dict[str, Any]:
    meta = meta_dict(sample.get("meta"))
    return {k: meta[k] for k in META_FLAGS if k in meta}


def probe_batch(
    model: Any,
    encoder: ChatEncoder,
    samples: Sequence[dict[str, Any]],
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    chunk: int = 2048,
    sampling: dict[str, Any] | None = None,
    entropy_from: str = "teacher_forced",
    answer_probs: bool = False,
    keep_texts: bool = False,
) -> list[dict[str, Any]]:
    """One probe row per sample (see the module docstring); ``sampling`` is ``probe.generation``
    (:func:`egt.eval.generation.generate_batch`), ``entropy_from`` a key of :data:`ENTROPY_FROM`;
    ``answer_probs`` adds :data:`ANSWER_PROB_COLUMNS` (:mod:`egt.probe.answer_probs`); ``keep_texts`` adds
    ``texts``, every draw's decoded output in draw order (``output`` is ``texts[0]``)."""
    tok = encoder.tokenizer
    device = next(model.parameters()).device
    batch = prompt_batch(encoder, samples, device)
    stops = stop_token_ids(model, tok)
    draws: list[list[dict[str, Any]]] = [[] for _ in samples]
    digits = answer_digit_ids(tok) if answer_probs else ()
    for _ in range(n):
        new, mask, ent, logp = ENTROPY_FROM[entropy_from](
            model, encoder, batch, stops, max_new_tokens, temperature, sampling, chunk, digits
        )  # [B, G] each; logp [B, G, 2] or None
        lengths = mask.sum(1).tolist()
        texts, where, spans = [], [], []
        for i, length in enumerate(lengths):
            ids = new[i, :length].tolist()
            texts.append(tok.decode(ids, skip_special_tokens=True))
            j = answer_token_index(tok, ids, texts[-1])
            where.append(-1 if j is None else j)
            spans.append(reasoning_token_range(tok, ids, texts[-1]) or (-1, -1))
        a = answer_entropy(ent, torch.tensor(where, device=ent.device)).tolist()
        s = sentence_entropy(ent, mask).tolist()
        start, end = (torch.tensor(c, device=ent.device) for c in zip(*spans))
        r = span_entropy(ent, start, end).tolist()
        probs = draw_answer_probs(logp, new, where, digits) if answer_probs else [None] * len(samples)
        for i in range(len(samples)):
            draws[i].append(
                {
                    "answer": parse_answer(texts[i]),
                    "a": a[i],
                    "s": s[i],
                    "r": r[i],
                    "len": lengths[i],
                    "fmt": format_ok(texts[i]),
                    "text": texts[i],
                    "p": probs[i],
                }
            )
    return [_row(sample, d, answer_probs, keep_texts) for sample, d in zip(samples, draws)]


def _row(
    sample: dict[str, Any], draws: list[dict[str, Any]], answer_probs: bool = False, keep_texts: bool = False
) -> dict[str, Any]:
    label = int(sample["label"])
    answered = [d["a"] for d in draws if math.isfinite(d["a"])]
    reasoned = [d["r"] for d in draws if not math.isnan(d["r"])]
    meta = _meta(sample)
    row = {
        "id": sample["id"],
        "answer_entropy": sum(answered) / len(answered) if answered else math.inf,
        "sentence_entropy": sum(d["s"] for d in draws) / len(draws),
        "reasoning_entropy": sum(reasoned) / len(reasoned) if reasoned else math.nan,
        "n_samples": len(draws),
        "n_no_answer": len(draws) - len(answered),
        "answers": [d["answer"] for d in draws],
        "correct_score": sum(d["answer"] == label for d in draws) / len(draws),
        "gen_lengths": [d["len"] for d in draws],
        "format_ok": sum(d["fmt"] for d in draws) / len(draws),
        "answer_entropies": [d["a"] for d in draws],
        "sentence_entropies": [d["s"] for d in draws],
        "reasoning_entropies": [d["r"] for d in draws],
        "output": draws[0]["text"],
        "label": label,
        "category": sample.get("category"),
    }
    if keep_texts:  # probe.keep_texts (the rft stage's trajectories); absent otherwise: the table is unchanged
        row["texts"] = [d["text"] for d in draws]
    row.update(meta)
    if answer_probs:
        row.update(answer_prob_columns([d["p"] for d in draws], label), source=sample.get("source"))
    if "true_label" in meta:
        row["true_score"] = sum(d["answer"] == int(meta["true_label"]) for d in draws) / len(draws)
    return row


# ----------------------------------------------------------------- shards of a data set
def probe_shards(
    model: Any,
    encoder: ChatEncoder,
    dataset: Any,
    shards: Sequence[Shard],
    out_dir: Path,
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    chunk: int = 2048,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
    sampling: dict[str, Any] | None = None,
    both_orders: bool = False,
    entropy_from: str = "teacher_forced",
    answer_probs: bool = False,
    keep_texts: bool = False,
) -> dict[str, int]:
    """Probe every shard not yet on disk; each finished shard is one atomic parquet write, after its
    seconds (:func:`shard_seconds_path`).

    Sampling is seeded per shard (``seed``, shard start), so a resumed or
    rank-split probe gives the same rows as one uninterrupted process.
    ``both_orders`` probes the shard again with the responses swapped (:func:`egt.data.schema.swap_sample`)
    after the shown order, adding the :data:`SWAPPED` columns; the shown-order columns are the rows a
    probe without it writes. ``answer_probs`` adds :data:`ANSWER_PROB_COLUMNS` and ``keep_texts`` the ``texts``
    column (every draw's output), shown order only.
    """
    was_training = model.training
    model.eval()
    done = computed = 0
    try:
        for shard in shards:
            path = shard_path(out_dir, shard)
            if path.is_file():
                done += 1
                if progress:
                    progress(shard[1] - shard[0])
                continue
            wall0, cpu0 = time.perf_counter(), time.process_time()
            torch.manual_seed(seed * 1_000_003 + shard[0])
            rows: list[dict[str, Any]] = []
            swapped: list[dict[str, Any]] = []
            for order in ("shown", "swapped") if both_orders else ("shown",):
                for start in range(shard[0], shard[1], batch_size):
                    samples = list(dataset.select(range(start, min(start + batch_size, shard[1]))))
                    if order == "shown":
                        rows += probe_batch(
                            model,
                            encoder,
                            samples,
                            n,
                            temperature,
                            max_new_tokens,
                            chunk,
                            sampling,
                            entropy_from,
                            answer_probs=answer_probs,
                            keep_texts=keep_texts,
                        )
                    else:
                        swapped += probe_batch(
                            model,
                            encoder,
                            [swap_sample(x) for x in samples],
                            n,
                            temperature,
                            max_new_tokens,
                            chunk,
                            sampling,
                            entropy_from,
                        )
                    if progress:
                        progress(len(samples) / 2 if both_orders else len(samples))  # a sample = both its orders
            for row, sw in zip(rows, swapped):
                row.update({f"{c}_swapped": sw[c] for c in SWAPPED})
            table = pd.DataFrame(rows)
            seconds = {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}
            write_json_atomic(shard_seconds_path(out_dir, shard), seconds)  # before the table: see shard_seconds_path
            write_parquet_atomic(table, path)
            computed += 1
    finally:
        model.train(was_training)
    return {"shards_reused": done, "shards_computed": computed}


def probe_rows(
    cfg: DictConfig, model: Any, encoder: ChatEncoder, ds: Any, mine: list, out: Path, rank: int, desc: str
) -> dict[str, int]:
    """This rank's shards of ``ds`` into ``out/shards/``, with the ``probe.*`` settings of ``cfg`` (a progress
    bar on rank 0): the probe stage's run, and the online curriculum's re-probes (:func:`probe_with`)."""
    p = cfg.probe
    with tqdm(
        total=sum(e - s for s, e in mine), desc=desc, unit="sample", dynamic_ncols=True, disable=rank != 0
    ) as bar:
        return probe_shards(
            model,
            encoder,
            ds,
            mine,
            out,
            n=p.n,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
            batch_size=p.batch_size,
            chunk=p.chunk_size,
            seed=cfg.seed,
            progress=bar.update,
            sampling=to_container(p.generation),
            both_orders=bool(p.get("both_orders", False)),
            entropy_from=str(p.get("entropy_from", "teacher_forced")),
            answer_probs=bool(p.get("answer_probs", False)),
            keep_texts=bool(p.get("keep_texts", False)),
        )


def probe_with(cfg: DictConfig, model: Any, processor: Any, ds: Any, out: Path, desc: str = "re-probe") -> pd.DataFrame:
    """Probe every row of ``ds`` with an in-memory ``model`` exactly as the probe stage does (its
    ``probe.*`` settings, prompt template, shards of ``probe.shard_size`` rows seeded by their start, so
    the rows equal a probe stage run with this model saved to disk and ``probe.model_path`` set).
    Collective: every rank probes its shards into ``out/shards/`` (a killed re-probe resumes from the
    finished shards), then every rank reads the merged table (one row per sample, in ``ds`` order; the
    columns of :mod:`egt.probe.probe`). The global RNG state is left as it was."""
    encoder = ChatEncoder(
        processor, template=cfg.data.template, max_length=cfg.probe.max_length, length_key="probe.max_length"
    )
    rank, world = distributed.rank(), distributed.world_size()
    shards = shard_ranges(len(ds), cfg.probe.shard_size)
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        probe_rows(cfg, model, encoder, ds, shards_for_rank(shards, rank, world), out, rank, desc)
    distributed.all_gather(rank)  # every shard is written
    return merge_shards(out, shards)
