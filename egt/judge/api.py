"""A trained judge as a Python object: ``Judge.from_pretrained(path).compare(images, question, r1, r2)``.

The prompt, the generation and the parsing are the eval stage's own (one code path): the judge card's
template through :class:`egt.data.encode.ChatEncoder`, images opened and prompts checked by
:func:`egt.eval.runner.prepare_view`, generation by :class:`egt.eval.runner.HFJudge` (egt's
:func:`egt.eval.generation.generation_config`: greedy unless the card says otherwise, the checkpoint's
generation_config.json contributing only its token ids), parsing by :func:`egt.data.prompt.parse_answer`.
The probability on a verdict is the probe's answer-token probability (:mod:`egt.probe.answer_probs`: p of the
verdict's digit at the answer token under the full softmax of the raw logits, temperature 1), read from one
teacher-forced pass over prompt + output (:meth:`egt.eval.runner.HFJudge.answer_probs`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from egt.data.prompt import parse_answer
from egt.data.schema import BadSampleError
from egt.judge.card import outside_card, read_card

log = logging.getLogger(__name__)
__all__ = ["Judge", "Verdict"]

ORDERS = ("shown", "both")


@dataclass(frozen=True)
class Verdict:
    """One judgement of a pair. ``verdict``: 1 or 2, the better response as numbered in the call (None: the
    output has no parseable answer, or the pair was skipped); ``probability``: p of that digit at the
    answer token (a fraction; None without a verdict, or when the answer token is not a bare digit);
    ``p_answer``: (p("1"), p("2")) there; ``reasoning``: the text inside ``<think>…</think>``; ``output``:
    the raw output. With ``order="both"``: ``swapped`` (the judgement of the pair shown the other way
    round, numbered as shown there), ``swapped_verdict`` (its verdict in this call's numbering) and
    ``orders_agree`` (both orders pick the same response; an unparsed one never agrees). ``skipped``:
    why the pair was not judged (``on_bad_sample="skip"``)."""

    verdict: int | None
    probability: float | None
    p_answer: tuple[float, float] | None
    reasoning: str | None
    output: str
    swapped: "Verdict | None" = field(default=None, repr=False)
    swapped_verdict: int | None = None
    orders_agree: bool | None = None
    skipped: str | None = None


def _reasoning(text: str) -> str | None:
    from egt.probe.locate import reasoning_char_span

    span = reasoning_char_span(text)
    return None if span is None else text[span[0] : span[1]].strip()


def _verdict(text: str, probs: Sequence[float] | None) -> Verdict:
    pred = parse_answer(text)
    have = probs is not None and not math.isnan(probs[0])
    p = (float(probs[0]), float(probs[1])) if have else None
    return Verdict(pred, None if p is None or pred is None else p[pred - 1], p, _reasoning(text), text)


def _skipped(reason: str) -> Verdict:
    return Verdict(None, None, None, None, "", skipped=reason)


class Judge:
    """A judge egt saved (or an outside checkpoint with a given template), ready to compare pairs.

    ``card``: the judge card (:mod:`egt.judge.card`) whose template, generation settings and prompt-length
    budget it uses; ``max_new_tokens`` / ``temperature`` override the card's (temperature > 0 samples each
    pair from its own stream seeded by ``seed`` and the pair, as eval's Voting@K does); ``batch_size``
    pairs per generate call.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        card: Mapping[str, Any],
        *,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        seed: int = 0,
    ) -> None:
        from egt.data.encode import ChatEncoder
        from egt.eval.runner import HFJudge

        self.model, self.processor, self.card, self.batch_size = model, processor, dict(card), int(batch_size)
        g = dict(card["generation"])
        self.encoder = ChatEncoder(
            processor,
            template=card["template"]["name"],
            max_length=int(card["max_length"]),
            length_key="the judge card's max_length",
            skip_key="on_bad_sample",
        )
        sampling = {k: g.get(k) for k in ("top_k", "top_p", "repetition_penalty", "use_checkpoint_defaults")}
        self.hf = HFJudge(
            model,
            self.encoder,
            int(max_new_tokens if max_new_tokens is not None else g["max_new_tokens"]),
            float(temperature if temperature is not None else g["temperature"]),
            seed,
            sampling,
        )
        try:
            from egt.probe.answer_probs import answer_digit_ids

            answer_digit_ids(self.encoder.tokenizer)
            self.has_probs = True
        except ValueError as exc:  # the tokenizer merges the digit with a neighbour: no p to read
            log.warning("judge: no answer-token probabilities (%s)", exc)
            self.has_probs = False

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        template: str | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | None = None,
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        **kw: Any,
    ) -> "Judge":
        """Load the judge at ``path``: its card (``egt_judge.json``) when egt saved it, else ``template`` (a name
        of :data:`egt.data.prompt.TEMPLATES`; required then) with egt's greedy defaults. ``device``: default
        cuda when available; ``dtype``: float32 on CPU, the checkpoint's own dtype on a GPU. ``kw`` go to
        :class:`Judge`."""
        from transformers import AutoConfig

        from egt.models.loader import load_model, load_processor

        card = read_card(path)
        if card is None and template is None:
            raise ValueError(
                f"{path} has no egt_judge.json (not a judge egt saved): pass template=, one of "
                f"{sorted(__import__('egt.data.prompt', fromlist=['TEMPLATES']).TEMPLATES)}"
            )
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            own = getattr(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), "dtype", None)
            own = str(own).removeprefix("torch.") if own is not None else "float32"
            dtype = own if device.type == "cuda" and own in ("bfloat16", "float16") else "float32"
        pixels = (card or {}).get("pixel_budget") or {}
        processor = load_processor(path, trust_remote_code, pixels.get("min_pixels"), pixels.get("max_pixels"))
        model = load_model(path, dtype, attn_implementation, trust_remote_code).to(device)
        if card is None:
            card = outside_card(template, processor)
        elif template is not None and template != card["template"]["name"]:
            log.warning("judge: template=%r overrides the card's %r", template, card["template"]["name"])
            card = {**card, "template": outside_card(template, processor)["template"]}
        return cls(model, processor, card, **kw)

    def compare(
        self,
        images: Sequence[Any],
        question: str,
        response_1: str,
        response_2: str,
        order: str = "shown",
    ) -> Verdict:
        """Which of two responses to ``question`` about ``images`` (PIL images, paths or bytes) is better."""
        item = {"images": images, "question": question, "response_1": response_1, "response_2": response_2}
        return self.compare_many([item], order=order)[0]

    def compare_many(
        self, items: Sequence[Mapping[str, Any]], order: str = "shown", on_bad_sample: str = "error"
    ) -> list[Verdict]:
        """One :class:`Verdict` per item (``images``, ``question`` (or ``query``), ``response_1``, ``response_2``,
        optional ``id``), ``batch_size`` views per generate call. ``order="both"`` also judges each pair
        with the responses exchanged (twice the calls). A bad item (missing or unreadable image, empty
        response, prompt over the card's max_length) raises :class:`BadSampleError` naming it and the
        field, or with ``on_bad_sample="skip"`` gets a Verdict with ``skipped`` set."""
        from egt.eval.runner import prepare_view

        if order not in ORDERS:
            raise ValueError(f"order={order!r}: write one of {ORDERS}")
        if on_bad_sample not in ("error", "skip"):
            raise ValueError(f"on_bad_sample={on_bad_sample!r}: write 'error' or 'skip'")
        views, skipped = [], {}
        for i, item in enumerate(items):
            try:
                view = _view(item, i)
            except BadSampleError as exc:
                if on_bad_sample == "error":
                    raise
                skipped[i] = f"{exc.field}: {exc.reason}"
                continue
            views.append({**view, "key": f"{i}|official", "index": i})
            if order == "both":
                swapped = {**view, "response_1": view["response_2"], "response_2": view["response_1"]}
                views.append({**swapped, "key": f"{i}|swapped", "index": i})
        out: dict[str, Verdict] = {}
        for start in range(0, len(views), self.batch_size):
            ready, prepared = [], []
            for v in views[start : start + self.batch_size]:
                p, skip = prepare_view(self.hf, v, 0, on_bad_sample, hint="on_bad_sample='skip'")
                if skip is not None:
                    out[v["key"]] = _skipped(skip["skipped"])
                else:
                    ready.append(v)
                    prepared.append(p)
            if prepared:
                out.update(zip((v["key"] for v in ready), self._judge(prepared)))
        return [_skipped(skipped[i]) if i in skipped else _pair(out, i, order) for i in range(len(items))]

    def _judge(self, prepared: list[Any]) -> list[Verdict]:
        batch, new = self.hf.generate_ids(prepared)
        texts = self.hf.decode(new)
        probs = self.hf.answer_probs(batch, new) if self.has_probs else [None] * len(texts)
        return [_verdict(t, p) for t, p in zip(texts, probs)]


def _pair(out: Mapping[str, Verdict], i: int, order: str) -> Verdict:
    first = out[f"{i}|official"]
    if order == "shown" or first.skipped:
        return first
    second = out[f"{i}|swapped"]
    if second.skipped:
        return Verdict(None, None, None, None, first.output, second, skipped=second.skipped)
    back = None if second.verdict is None else 3 - second.verdict
    agree = first.verdict is not None and first.verdict == back
    return Verdict(first.verdict, first.probability, first.p_answer, first.reasoning, first.output, second, back, agree)


def _view(item: Mapping[str, Any], i: int) -> dict[str, Any]:
    """A pair as the eval runner's views are: id, images (a list), query, the two responses."""
    sid = item.get("id", i)
    question = item.get("question", item.get("query"))
    images = item.get("images")
    if images is None and item.get("image") is not None:
        images = [item["image"]]
    if not images:
        raise BadSampleError(sid, "images", "missing: the judge needs at least one image")
    for name, value in (
        ("question", question),
        ("response_1", item.get("response_1")),
        ("response_2", item.get("response_2")),
    ):
        if not isinstance(value, str) or not value.strip():
            raise BadSampleError(sid, name, "empty or not a string")
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    return {
        "id": sid,
        "images": images,
        "query": question,
        "response_1": item["response_1"],
        "response_2": item["response_2"],
    }
