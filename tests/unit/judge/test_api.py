"""egt.judge.Judge on the tiny model: the same prompt, generation and parsing as the eval runner, the probe's
answer-token probability, both orders, and the eval stage's errors and skips for bad pairs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from egt.data.prompt import parse_answer
from egt.data.schema import BadSampleError
from egt.eval.generation import prompt_batch
from egt.eval.runner import HFJudge, evaluate
from egt.judge import Judge, Verdict
from egt.judge import api
from egt.utils.io import Journal
from egt.benchmarks.base import Benchmark

IMG = Image.new("RGB", (56, 56), "red")


class TinyBench(Benchmark):
    name = "tiny"
    categories = ("general",)

    def root(self, data_root):
        return Path(".")

    def load_items(self, root):
        rows = [("q", "a", "b"), ("how many?", "two", "three"), ("colour?", "red", "blue"), ("q", "b", "a")]
        return self.convert_rows(
            Path("tiny.jsonl"),
            range(len(rows)),
            lambda i, _: {
                "id": f"t{i}",
                "category": "general",
                "images": [IMG],
                "query": rows[i][0],
                "response_1": rows[i][1],
                "response_2": rows[i][2],
                "label": 1,
            },
        )


@pytest.fixture(scope="module")
def judge(tiny_model_dir):
    return Judge.from_pretrained(tiny_model_dir, template="minimal", max_new_tokens=12, batch_size=3)


def test_an_outside_checkpoint_needs_a_template(tiny_model_dir):
    with pytest.raises(ValueError, match="no egt_judge.json.*pass template="):
        Judge.from_pretrained(tiny_model_dir)


def test_verdict_probability_and_reasoning_from_the_output():
    v = api._verdict("<think>Two circles.</think><answer>2</answer>", [0.3, 0.6])
    assert (v.verdict, v.probability, v.p_answer, v.reasoning) == (2, 0.6, (0.3, 0.6), "Two circles.")
    v = api._verdict("<think>x</think>", [math.nan, math.nan])  # no answer: no verdict, no guess
    assert (v.verdict, v.probability, v.p_answer) == (None, None, None)


def test_compare_is_the_eval_runners_prediction(judge, tmp_path):
    """The eval runner (HFJudge, greedy, same template and max_new_tokens) and compare() give the same
    output text for the same items, in both orders, batched differently."""
    bench = TinyBench()
    items = bench.load()
    runner_judge = HFJudge(judge.model, judge.encoder, max_new_tokens=12)
    _, records, _ = evaluate(
        bench, items, runner_judge, Journal(tmp_path / "j.jsonl"), order="both", batch_size=8, progress=False
    )
    by_key = {r["key"]: r for r in records}
    pairs = [{k: it[k] for k in ("id", "images", "query", "response_1", "response_2")} for it in items]
    verdicts = judge.compare_many(pairs, order="both")
    for it, v in zip(items, verdicts):
        official, swapped = by_key[f"{it['id']}|official"], by_key[f"{it['id']}|swapped"]
        assert v.output == official["outputs"][0] and v.verdict == official["pred"] == parse_answer(v.output)
        assert v.swapped.output == swapped["outputs"][0]


def test_answer_prob_is_the_full_softmax_at_the_answer_token(judge):
    """HFJudge.answer_probs on a forced output: [p1, p2] = softmax(raw logits)[digit ids] at the answer digit."""
    enc, model = judge.encoder, judge.model
    tok = enc.tokenizer
    sample = {"id": "x", "images": [IMG], "query": "q", "response_1": "a", "response_2": "b"}
    batch = prompt_batch(enc, [sample], torch.device("cpu"))
    ids = tok("<think>a 2</think><answer>2</answer>", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    new = torch.tensor([ids])
    (p,) = judge.hf.answer_probs(batch, new)
    full = torch.cat([batch["input_ids"], new], 1)
    kw = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    if "mm_token_type_ids" in batch:
        kw["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], 1)
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=torch.ones_like(full), **kw).logits[0]  # [T+G, V]
    T = batch["input_ids"].shape[1]
    j = len(ids) - 1 - tok("</answer>", add_special_tokens=False)["input_ids"].__len__() - 1  # the "2" of the answer
    assert tok.decode([ids[j]]) == "2"
    probs = torch.softmax(logits[T + j - 1].double(), -1)
    one, two = (tok.convert_tokens_to_ids(d) for d in ("1", "2"))
    assert p == pytest.approx([float(probs[one]), float(probs[two])], rel=1e-4)


def test_both_orders_map_the_swapped_verdict_back(judge, monkeypatch):
    """A judge that always picks the first response shown: its swapped verdict, in the call's numbering, is 2:
    the orders disagree. One that always picks "b" agrees with itself."""

    def first(prepared):
        return [api._verdict("<think>t</think><answer>1</answer>", [0.7, 0.2]) for _ in prepared]

    monkeypatch.setattr(judge, "_judge", first)
    v = judge.compare([IMG], "q", "a", "b", order="both")
    assert (v.verdict, v.swapped.verdict, v.swapped_verdict, v.orders_agree) == (1, 1, 2, False)

    def pick_b(prepared):  # the batch is [official (b second), swapped (b first)]
        return [api._verdict(f"<answer>{d}</answer>", None) for d in (2, 1)]

    monkeypatch.setattr(judge, "_judge", pick_b)
    v = judge.compare([IMG], "q", "a", "b", order="both")
    assert (v.verdict, v.swapped_verdict, v.orders_agree) == (2, 2, True)


def test_bad_pairs_get_the_eval_stages_errors_or_skips(judge, tmp_path):
    with pytest.raises(BadSampleError, match="'p1'.*field 'response_2': empty"):
        judge.compare_many([{"id": "p1", "images": [IMG], "question": "q", "response_1": "a", "response_2": " "}])
    missing = tmp_path / "nope.png"
    with pytest.raises(BadSampleError, match=r"field 'images'.*nope\.png.*on_bad_sample='skip'"):
        judge.compare([missing], "q", "a", "b")
    long = Judge(judge.model, judge.processor, {**judge.card, "max_length": 20})
    with pytest.raises(BadSampleError, match="over the judge card's max_length=20"):
        long.compare([IMG], "q", "a", "b")
    out = judge.compare_many(
        [
            {"images": [missing], "question": "q", "response_1": "a", "response_2": "b"},
            {"images": [], "question": "q", "response_1": "a", "response_2": "b"},
            {"images": [IMG], "question": "q", "response_1": "a", "response_2": "b"},
        ],
        on_bad_sample="skip",
    )
    assert [v.skipped is not None for v in out] == [True, True, False]
    assert out[0].skipped.startswith("images: cannot open") and out[1].skipped.startswith("images: missing")
    assert isinstance(out[2], Verdict) and out[2].verdict is None and out[2].output
    with pytest.raises(ValueError, match="order='x': write one of"):
        judge.compare([IMG], "q", "a", "b", order="x")
