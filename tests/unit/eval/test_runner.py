"""The eval runner: journalled generation resumes after a crash without generating anything twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from egt.benchmarks.base import Benchmark
from egt.data.schema import BadSampleError
from egt.eval.runner import evaluate
from egt.utils.io import Journal


class TinyBench(Benchmark):
    name = "tiny"
    categories = ("general", "reasoning")

    def __init__(self, n: int = 10, **kw):
        super().__init__(**kw)
        self.n = n

    def root(self, data_root):
        return Path(".")

    def load_items(self, root):
        img = Image.new("RGB", (4, 4), "red")
        return self.convert_rows(
            Path("tiny.jsonl"),
            range(self.n),
            lambda i, row: {
                "id": f"t{i}",
                "category": "general" if i % 2 else "reasoning",
                "images": [img],
                "query": "q",
                "response_1": "a",
                "response_2": "b",
                "label": 1 + i % 2,
            },
        )


class FakeJudge:
    """Right on even items, always answers "1" on odd ones; can crash on a given call."""

    def __init__(self, die_on_call: int | None = None):
        self.die_on_call, self.calls, self.seen = die_on_call, 0, []

    def prepare(self, sample):
        if sample["id"] == "bad":
            raise BadSampleError("bad", "images", "broken")
        return sample

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.die_on_call:
            raise RuntimeError("killed")
        self.seen += [(s["key"]) for s in batch]
        return [f"<think>t</think><answer>{s['label'] if int(s['id'][1:]) % 2 == 0 else 1}</answer>" for s in batch]


def test_crashed_eval_resumes_from_journal_without_regenerating(tmp_path):
    bench = TinyBench()
    items = bench.load()
    journal = Journal(tmp_path / "journal.jsonl")
    dying = FakeJudge(die_on_call=3)
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(bench, items, dying, journal, order="both", batch_size=4, progress=False)
    assert len(journal.read()) == 8  # two batches of 4 made it to the journal
    resumed = FakeJudge()
    metrics, records, info = evaluate(bench, items, resumed, journal, order="both", batch_size=4, progress=False)
    assert set(dying.seen).isdisjoint(resumed.seen)  # no (view) generated twice
    assert len(dying.seen) + len(resumed.seen) == 20 and info["resumed_from"] == 8
    fresh, _, _ = evaluate(
        bench, items, FakeJudge(), Journal(tmp_path / "fresh.jsonl"), order="both", batch_size=4, progress=False
    )
    assert metrics == fresh
    # official view: even items right, odd ones (label 2) answered 1 → 5/10
    assert metrics["overall"] == 0.5 and metrics["order/position_consistency"] == 0.5
    keys = [json.loads(line)["key"] for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 20


def test_bad_sample_at_generation_errors_or_is_counted(tmp_path):
    bench = TinyBench(n=3)
    items = bench.load()
    items[1]["id"] = "bad"
    with pytest.raises(BadSampleError, match="eval.on_bad_sample=skip"):
        evaluate(bench, items, FakeJudge(), Journal(tmp_path / "a.jsonl"), progress=False)
    items[1]["id"] = "bad"
    metrics, records, info = evaluate(
        bench, items, FakeJudge(), Journal(tmp_path / "b.jsonl"), on_bad_sample="skip", progress=False
    )
    assert metrics["n"] == 2 and metrics["skipped_items"] == 1 and sum(info["skipped_views"].values()) == 1
    assert list(metrics["skipped_by_reason"]) == [f"generation/{next(iter(info['skipped_views']))}"]


def _sampled(tiny_model_dir, views, batch_size, journal, seed=0, votes=2):
    from egt.data.encode import ChatEncoder
    from egt.eval.runner import HFJudge, generate_views
    from egt.models.loader import load_model_and_processor

    model, proc = load_model_and_processor(tiny_model_dir)
    judge = HFJudge(model, ChatEncoder(proc), max_new_tokens=8, temperature=1.0, seed=seed)
    torch.manual_seed(batch_size)  # the global stream must not matter either
    out = generate_views(views, judge, journal, votes, batch_size, progress=False)
    return {k: r["output"] for k, r in out.items()}


def test_sampled_votes_do_not_depend_on_batch_size_or_resume(tiny_model_dir, world_small, tmp_path):
    rows = list(world_small["rl_pool"].select(range(3)))
    views = [{**r, "key": f"{r['id']}|official"} for r in rows]
    one = _sampled(tiny_model_dir, views, 1, Journal(tmp_path / "b1.jsonl"))
    three = _sampled(tiny_model_dir, views, 3, Journal(tmp_path / "b3.jsonl"))
    assert one == three  # the same (view, vote) → the same draw, however it is batched
    assert len(set(one.values())) > 1  # sampled: the votes differ
    part = Journal(tmp_path / "resumed.jsonl")
    part.append([{"key": views[0]["key"], "k": 0, "output": one[(views[0]["key"], 0)]}])
    assert _sampled(tiny_model_dir, views, 2, part) == one  # resumed mid-way: the rest drawn as before
    assert _sampled(tiny_model_dir, views, 3, Journal(tmp_path / "s1.jsonl"), seed=1) != one  # eval.seed counts
