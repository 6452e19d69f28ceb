"""Evaluate a judge on one benchmark: views → resumable generation → records → metrics.

A *view* is an item as shown to the judge: ``official`` (the benchmark's protocol) and,
with ``order="both"``, ``swapped`` (the two responses exchanged). Each view is generated
``votes`` times. Every finished generation is appended to a :class:`~egt.utils.io.Journal`
before the next batch starts, so a killed evaluation resumes without generating any
(view, vote) twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Optional, Protocol, Sequence

import torch
from tqdm.auto import tqdm

from egt.benchmarks import metrics as M
from egt.benchmarks.base import Benchmark, open_images, swap
from egt.data.prompt import format_ok, parse_answer
from egt.data.schema import BadSampleError
from egt.utils.io import Journal

log = logging.getLogger(__name__)


class Judge(Protocol):
    """What the runner needs from a model: encode one sample, generate a batch of encodings."""

    def prepare(self, sample: dict[str, Any]) -> Any: ...  # raises BadSampleError
    def __call__(self, prepared: list[Any]) -> list[str]: ...


class HFJudge:
    """A Hugging Face VLM + its :class:`~egt.data.encode.ChatEncoder`; greedy at temperature 0. Sampled
    (temperature > 0), every (view key, vote) is drawn from its own stream seeded by ``seed`` and that
    pair (:func:`~egt.eval.generation.row_seed`), so batch size, process count and resume change no draw."""

    def __init__(
        self,
        model: Any,
        encoder: Any,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.encoder, self.sampling = model, encoder, sampling
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.calls = 0

    def prepare(self, sample: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int]:
        """(prompt features, the row's sampling seed) for one (view, ``sample["vote"]``)."""
        from egt.eval.generation import row_seed

        return self.encoder.encode_prompt(sample), row_seed(self.seed, sample["key"], int(sample.get("vote", 0)))

    @torch.no_grad()
    def generate_ids(
        self, prepared: list[tuple[dict[str, torch.Tensor], int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(the left-padded prompt batch, its generated ids [B, G]) for prepared rows."""
        from egt.data.encode import collate
        from egt.eval.generation import generate_batch

        self.calls += 1
        tok = self.encoder.tokenizer
        device = next(self.model.parameters()).device
        feats = [f for f, _ in prepared]
        batch = {k: v.to(device) for k, v in collate(feats, tok.pad_token_id, side="left").items()}
        self.model.eval()
        new = generate_batch(
            self.model,
            self.encoder,
            batch,
            self.max_new_tokens,
            self.temperature,
            self.sampling,
            row_seeds=[s for _, s in prepared],
        )
        return batch, new

    def decode(self, new: torch.Tensor) -> list[str]:
        """The output text of each row of generated ids [B, G] (special tokens and padding dropped)."""
        return self.encoder.tokenizer.batch_decode(new, skip_special_tokens=True)

    def __call__(self, prepared: list[tuple[dict[str, torch.Tensor], int]]) -> list[str]:
        return self.decode(self.generate_ids(prepared)[1])

    @torch.no_grad()
    def answer_probs(self, batch: dict[str, torch.Tensor], new: torch.Tensor) -> list[list[float]]:
        """Per row [p("1"), p("2")] at its answer token (NaN where it has none): the probe's answer-token
        probabilities (:mod:`egt.probe.answer_probs`, full softmax of the raw logits) of these outputs, from one
        teacher-forced pass over prompt + ``new`` (probe.entropy_from=teacher_forced's pass)."""
        from egt.probe.answer_probs import answer_digit_ids, draw_answer_probs, logprobs_at
        from egt.probe.locate import answer_token_index
        from egt.probe.probe import forced_hidden, generated_mask, stop_token_ids

        tok = self.encoder.tokenizer
        digits = answer_digit_ids(tok)
        mask = generated_mask(new, stop_token_ids(self.model, tok))  # [B, G]
        where = []
        for i, length in enumerate(mask.sum(1).tolist()):
            j = answer_token_index(tok, new[i, :length].tolist())
            where.append(-1 if j is None else j)
        at = mask & torch.isin(new, torch.tensor(digits, device=new.device))  # [B, G]
        hidden, head = forced_hidden(self.model, batch, new)  # [B, G, H]
        return draw_answer_probs(logprobs_at(hidden, head, at, digits), new, where, digits)


def prepare_view(
    judge: Judge, view: dict[str, Any], vote: int, on_bad_sample: str = "error", hint: str = "eval.on_bad_sample=skip"
) -> tuple[Any, Optional[dict[str, Any]]]:
    """``(judge.prepare(view with its images opened), None)``, or with ``on_bad_sample="skip"`` ``(None, the
    skip record)`` for a view that cannot be shown (unreadable image, prompt over the length budget, …);
    with ``"error"`` the :class:`BadSampleError` naming the item and field, and ``hint``."""
    try:
        return judge.prepare({**view, "images": open_images(view), "vote": vote}), None
    except BadSampleError as exc:
        if on_bad_sample == "error":
            raise BadSampleError(exc.sample_id, exc.field, f"{exc.reason} (or set {hint})") from None
        return None, {"key": view["key"], "k": vote, "skipped": f"{exc.field}: {exc.reason}", "kind": exc.kind}


def make_views(bench: Benchmark, items: Sequence[dict[str, Any]], order: str, seed: int) -> list[dict[str, Any]]:
    """Items as shown: the official presentation, plus the swapped one with ``order='both'``."""
    views = []
    for item in items:
        shown = bench.present(item, seed)
        views.append({**shown, "view": "official", "key": f"{item['id']}|official"})
        if order == "both":
            views.append({**swap(shown), "view": "swapped", "key": f"{item['id']}|swapped"})
    return views


def generate_views(
    views: Sequence[dict[str, Any]],
    judge: Judge,
    journal: Journal,
    votes: int = 1,
    batch_size: int = 16,
    on_bad_sample: str = "error",
    progress: bool = True,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Outputs for every (view key, vote), journalled per batch; what the journal holds is not redone.

    Returns ``{(key, k): {"output": str} | {"skipped": reason}}``.
    """
    done = {(r["key"], int(r["k"])): r for r in journal.read()}
    pending = [(v, k) for v in views for k in range(votes) if (v["key"], k) not in done]
    if done:
        log.info("[eval] resuming: %d generations in the journal, %d to go", len(done), len(pending))
    bar = tqdm(total=len(pending), desc="eval", unit="pair", dynamic_ncols=True, disable=not progress)
    for start in range(0, len(pending), batch_size):
        chunk, prepared, ready, new = pending[start : start + batch_size], [], [], []
        for view, k in chunk:
            item, skip = prepare_view(judge, view, k, on_bad_sample)
            if skip is not None:
                new.append(skip)
            else:
                prepared.append(item)
                ready.append((view, k))
        outputs = judge(prepared) if prepared else []
        new += [{"key": v["key"], "k": k, "output": o} for (v, k), o in zip(ready, outputs)]
        journal.append(new)
        done.update({(r["key"], r["k"]): r for r in new})
        bar.update(len(chunk))
    bar.close()
    return done


def build_records(
    views: Sequence[dict[str, Any]], outputs: dict[tuple[str, int], dict[str, Any]], votes: int
) -> tuple[list[dict[str, Any]], Counter]:
    """One record per generated view (pred = vote majority); returns (records, skipped views by kind:
    prompt too long, unreadable image, …)."""
    records, skipped = [], Counter()
    for v in views:
        outs = [outputs[(v["key"], k)] for k in range(votes)]
        bad = next((o for o in outs if "skipped" in o), None)
        if bad is not None:
            skipped[bad.get("kind") or bad["skipped"].split(":")[0]] += 1
            continue
        texts = [o["output"] for o in outs]
        preds = [parse_answer(t) for t in texts]
        records.append(
            {
                "id": v["id"],
                "key": v["key"],
                "view": v["view"],
                "group": v["group"],
                "category": v["category"],
                "label": int(v["label"]),
                "pred": preds[0] if votes == 1 else M.majority_vote(preds),
                "votes": preds,
                "format_ok": format_ok(texts[0]),
                "outputs": texts,
            }
        )
    return records, skipped


def _prefixed(prefix: str, metrics: dict[str, Any], keys: Optional[Sequence[str]] = None) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in metrics.items() if keys is None or k in keys}


def compute_metrics(
    bench: Benchmark, records: Sequence[dict[str, Any]], votes: int = 1, order: str = "official"
) -> dict[str, Any]:
    """Official metrics (on the official view) + parse failures, strict accuracy, order and voting extras."""
    official = [r for r in records if r["view"] == "official"]
    out = dict(bench.score(official))
    failures = sum(r["pred"] is None for r in official)
    out["parse_failures"] = failures
    out["parse_failure_rate"] = failures / len(official) if official else None
    out["format_ok"] = sum(r["format_ok"] for r in official) / len(official) if official else None
    strict = M.accuracy_table(official, "wrong", bench.categories)
    out.update(_prefixed("strict", strict, ["overall", "macro"] + [f"category/{c}" for c in bench.categories]))
    if votes > 1:
        single = bench.score([{**r, "pred": r["votes"][0]} for r in official])
        out["votes/k"] = votes
        out.update(_prefixed("single", single, ["overall", "macro", "headline"]))
    if order == "both":
        out.update(order_metrics(bench, official, [r for r in records if r["view"] == "swapped"]))
    return out


DEBIASED_KEYS = ("overall", "macro", "headline", "acc_plus")


def order_metrics(
    bench: Benchmark, official: Sequence[dict[str, Any]], swapped: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Position-bias metrics (``order/…``, fractions) of the items judged in both orders.

    - ``order/swapped/{overall,macro,headline}``: the official scoring on the swapped view;
    - ``order/debiased/<key>``: the mean over both orders of the official ``<key>`` (overall,
      macro, headline, acc_plus), each order scored as the benchmark's authors score it;
    - ``order/position_consistency``: the fraction of items whose verdict picks the same
      response in both orders (an unparsed verdict is inconsistent), with
      ``order/both_orders_correct``, ``order/same_position_both_orders``, ``order/pairs``;
    - ``order/chosen_first/accuracy``, ``order/chosen_second/accuracy``: over both orders,
      accuracy when the better response is shown first / second (unparsed = wrong), and
      ``order/first_minus_second``, their difference (> 0: the judge favours the first).
    """
    by_id = {r["id"]: r for r in swapped}
    pairs = [(r, by_id[r["id"]]) for r in official if r["id"] in by_id]
    out = _prefixed("order/swapped", bench.score(list(swapped)), ["overall", "macro", "headline"])
    as_shown = bench.score([x for x, _ in pairs]), bench.score([y for _, y in pairs])
    for key in DEBIASED_KEYS:
        vals = [s.get(key) for s in as_shown]
        if key in as_shown[0] and None not in vals:
            out[f"order/debiased/{key}"] = sum(vals) / 2
    both = [r for pair in pairs for r in pair]
    for name, lab in (("chosen_first", 1), ("chosen_second", 2)):
        sub = [r for r in both if int(r["label"]) == lab]
        out[f"order/{name}/accuracy"] = M.accuracy_table(sub, "wrong")["overall"] if sub else None
    first, second = out["order/chosen_first/accuracy"], out["order/chosen_second/accuracy"]
    out["order/first_minus_second"] = None if first is None or second is None else first - second
    out.update(_prefixed("order", M.position_consistency(pairs)))
    return out


def score_outputs(
    bench: Benchmark,
    views: Sequence[dict[str, Any]],
    outputs: dict[tuple[str, int], dict[str, Any]],
    votes: int,
    order: str,
) -> tuple[dict[str, Any], list[dict[str, Any]], Counter]:
    """Records and metrics of the generated views, with every item that was not scored counted by reason
    (``skipped_by_reason``: ``load/<kind>`` and ``generation/<kind>``) and logged."""
    records, skipped_views = build_records(views, outputs, votes)
    metrics = compute_metrics(bench, records, votes, order)
    metrics["skipped_items"] = sum(bench.skipped.values()) + sum(skipped_views.values())
    metrics["skipped_by_reason"] = {
        **{f"load/{k}": n for k, n in bench.skipped.items()},
        **{f"generation/{k}": n for k, n in skipped_views.items()},
    }
    if metrics["skipped_items"]:
        log.warning(
            "[eval] %s: %d items not scored %s", bench.name, metrics["skipped_items"], metrics["skipped_by_reason"]
        )
    return metrics, records, skipped_views


def evaluate(
    bench: Benchmark,
    items: Sequence[dict[str, Any]],
    judge: Judge,
    journal: Journal,
    *,
    order: str = "official",
    votes: int = 1,
    batch_size: int = 16,
    on_bad_sample: str = "error",
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Generate (resumably) and score; returns (metrics, records, run info incl. throughput)."""
    views = make_views(bench, items, order, seed)
    t0 = time.perf_counter()
    n_before = len(journal.read())
    outputs = generate_views(views, judge, journal, votes, batch_size, on_bad_sample, progress)
    seconds = time.perf_counter() - t0
    metrics, records, skipped_views = score_outputs(bench, views, outputs, votes, order)
    generated = len(outputs) - n_before
    info = {
        "views": len(views),
        "generations": len(outputs),
        "generated_now": generated,
        "resumed_from": n_before,
        "seconds": round(seconds, 2),
        "generations_per_s": round(generated / seconds, 3) if seconds > 0 and generated else None,
        "skipped_views": dict(skipped_views),
        "skipped_at_load": dict(bench.skipped),
    }
    return metrics, records, info


# ------------------------------------------------------------------ several processes (egt.distributed)
def read_journals(directory: Any) -> dict[tuple[str, int], dict[str, Any]]:
    """Every generation journalled in ``directory`` (``journal.jsonl`` and the per-rank ``journal.rank*.jsonl``)."""
    from pathlib import Path

    done: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("journal*.jsonl")):
        done.update({(r["key"], int(r["k"])): r for r in Journal(path).read()})
    return done


def generate_shard(
    bench: Benchmark,
    items: Sequence[dict[str, Any]],
    judge: Judge,
    directory: Any,
    rank: int,
    world_size: int,
    *,
    order: str = "official",
    votes: int = 1,
    batch_size: int = 16,
    on_bad_sample: str = "error",
    seed: int = 0,
) -> dict[str, Any]:
    """Rank ``rank``'s share of the views (round robin), journalled in ``journal.rank<r>.jsonl``; views
    some journal already holds in full are not redone (so a resume may use another world size)."""
    from pathlib import Path

    views = make_views(bench, items, order, seed)
    before = read_journals(directory)
    mine = [v for v in views[rank::world_size] if any((v["key"], k) not in before for k in range(votes))]
    t0 = time.perf_counter()
    journal = Journal(Path(directory) / f"journal.rank{rank}.jsonl")
    n_before = len(journal.read())
    out = generate_views(mine, judge, journal, votes, batch_size, on_bad_sample, progress=rank == 0)
    return {"generated_now": len(out) - n_before, "seconds": time.perf_counter() - t0, "resumed_from": len(before)}


def merge_shards(
    bench: Benchmark,
    items: Sequence[dict[str, Any]],
    directory: Any,
    shard_infos: Sequence[dict],
    *,
    order: str = "official",
    votes: int = 1,
    seed: int = 0,
) -> tuple[dict, list[dict], dict]:
    """Metrics, records and run info from every rank's journal: what :func:`evaluate` returns in one process."""
    views = make_views(bench, items, order, seed)
    outputs = read_journals(directory)
    missing = [(v["key"], k) for v in views for k in range(votes) if (v["key"], k) not in outputs]
    if missing:
        raise RuntimeError(f"eval: {len(missing)} generations missing after every rank finished, e.g. {missing[:3]}")
    metrics, records, skipped_views = score_outputs(bench, views, outputs, votes, order)
    generated = sum(i["generated_now"] for i in shard_infos)
    seconds = max(i["seconds"] for i in shard_infos)
    info = {
        "views": len(views),
        "generations": len(outputs),
        "generated_now": generated,
        "resumed_from": shard_infos[0]["resumed_from"],
        "seconds": round(seconds, 2),
        "generations_per_s": round(generated / seconds, 3) if seconds > 0 and generated else None,
        "skipped_views": dict(skipped_views),
        "skipped_at_load": dict(bench.skipped),
        "processes": len(shard_infos),
    }
    return metrics, records, info
