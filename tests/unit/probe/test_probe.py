"""The probe on the tiny model: exact entropies, shards split across ranks, resume after a kill."""

import json
import math

import pandas as pd
import pytest
import torch

import egt.probe.probe as probe_mod
from egt.data.encode import ChatEncoder
from egt.eval.generation import prompt_batch
from egt.models.loader import load_model_and_processor
from egt.probe.entropy import sentence_entropy, token_entropy
from egt.probe.probe import (
    generated_mask,
    generation_entropy,
    merge_shards,
    probe_batch,
    probe_shards,
    shard_path,
    shard_ranges,
    shard_seconds,
    shard_seconds_path,
    shards_for_rank,
    stop_token_ids,
    teacher_forced_entropy,
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, processor = load_model_and_processor(tiny_model_dir)
    return model, ChatEncoder(processor)


def _full_logits(model, batch, new):
    ids = torch.cat([batch["input_ids"], new], 1)
    kw = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    mask = torch.cat([batch["attention_mask"], torch.ones_like(new)], 1)
    if "mm_token_type_ids" in batch:
        kw["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], 1)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kw).logits


def test_teacher_forced_entropy_equals_full_logits_and_greedy(tiny, world_small):
    model, enc = tiny
    samples = list(world_small["rl_pool"].select(range(3)))
    batch = prompt_batch(enc, samples, "cpu")
    new = probe_mod.generate_batch(model, enc, batch, max_new_tokens=6)
    mask = generated_mask(new, stop_token_ids(model, enc.tokenizer))
    ent = teacher_forced_entropy(model, batch, new, mask, chunk=4)
    T = batch["input_ids"].shape[1]
    logits = _full_logits(model, batch, new)[:, T - 1 : -1]  # [B, G, V]
    assert torch.allclose(ent, token_entropy(logits) * mask, atol=1e-5)
    assert ((logits.argmax(-1) == new) | ~mask).all()  # the pass sees what greedy generation saw


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_time_entropy_equals_the_teacher_forced_pass(tiny, world_small, temperature):
    """probe.entropy_from=generate: the entropies a hook on the output head reads while generating are the
    teacher-forced pass's on the same tokens, greedy or sampled (raw logits, before any processor)."""
    model, enc = tiny
    samples = list(world_small["rl_pool"].select(range(3)))
    batch = prompt_batch(enc, samples, "cpu")
    torch.manual_seed(0)
    new, ent = generation_entropy(model, enc, batch, max_new_tokens=6, temperature=temperature)
    mask = generated_mask(new, stop_token_ids(model, enc.tokenizer))
    assert ent.shape == new.shape and not model.get_output_embeddings()._forward_hooks  # the hook is gone
    forced = teacher_forced_entropy(model, batch, new, mask, chunk=4)
    assert torch.allclose(ent * mask, forced, atol=1e-5)
    if temperature == 0.0:  # greedy: the probe rows hold the same outputs and entropies
        rows = probe_batch(model, enc, samples, max_new_tokens=6, entropy_from="generate")
        assert [r["gen_lengths"] for r in rows] == [[n] for n in mask.sum(1).tolist()]
        assert [r["sentence_entropy"] for r in rows] == pytest.approx(sentence_entropy(forced, mask).tolist(), abs=1e-5)


def test_generated_mask_stops_before_first_stop_token():
    new = torch.tensor([[5, 6, 0, 7], [5, 6, 7, 8], [0, 0, 0, 0]])
    assert generated_mask(new, {0}).sum(1).tolist() == [2, 4, 0]


def test_answer_entropy_at_the_digit(tiny, world_small, monkeypatch):
    """Force an output with an answer; its answer entropy is the entropy that produced the digit."""
    model, enc = tiny
    tok = enc.tokenizer
    text = "<think>The image shows 2 circles.</think><answer>2</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    forced = torch.tensor([ids, ids[:3] + [tok.eos_token_id] * (len(ids) - 3)])
    monkeypatch.setattr(probe_mod, "generate_batch", lambda *a, **k: forced)
    samples = list(world_small["rl_pool"].select(range(2)))
    rows = probe_batch(model, enc, samples, max_new_tokens=len(ids))
    batch = prompt_batch(enc, samples, "cpu")
    T = batch["input_ids"].shape[1]
    ent = token_entropy(_full_logits(model, batch, forced)[:, T - 1 : -1])
    j = next(i for i in range(len(ids)) if "2" in tok.decode([ids[i]]) and tok.decode(ids[:i]).endswith("<answer>"))
    assert rows[0]["answers"] == [2] and rows[0]["gen_lengths"] == [len(ids) - 1] and rows[0]["format_ok"] == 1
    assert rows[0]["answer_entropy"] == pytest.approx(ent[0, j].item(), abs=1e-5)
    assert rows[0]["sentence_entropy"] == pytest.approx(ent[0, : len(ids) - 1].mean().item(), abs=1e-5)
    assert rows[0]["correct_score"] == float(samples[0]["label"] == 2)
    assert math.isinf(rows[1]["answer_entropy"]) and rows[1]["n_no_answer"] == 1 and rows[1]["answers"] == [None]
    assert "flipped" in rows[0] and "difficulty" in rows[0]


def test_shard_split():
    shards = shard_ranges(11, 3)
    assert shards == [(0, 3), (3, 6), (6, 9), (9, 11)]
    parts = [shards_for_rank(shards, r, 3) for r in range(3)]
    assert sorted(s for p in parts for s in p) == shards
    with pytest.raises(ValueError):
        shards_for_rank(shards, 3, 3)


KW = dict(n=2, temperature=1.0, max_new_tokens=3, batch_size=2, chunk=7, seed=1)


def test_two_ranks_merge_to_the_single_process_table(tiny, world_small, tmp_path):
    model, enc = tiny
    ds = world_small["rl_pool"].select(range(5))
    shards = shard_ranges(len(ds), 2)
    probe_shards(model, enc, ds, shards, tmp_path / "single", **KW)
    single = merge_shards(tmp_path / "single", shards)
    for rank in (1, 0):  # ranks finish in any order
        probe_shards(model, enc, ds, shards_for_rank(shards, rank, 2), tmp_path / "ddp", **KW)
    merged = merge_shards(tmp_path / "ddp", shards)
    assert len(single) == 5 and single["id"].tolist() == ds["id"]
    pd.testing.assert_frame_equal(single, merged)


def test_resume_after_kill_recomputes_only_missing_shards(tiny, world_small, tmp_path):
    model, enc = tiny
    ds = world_small["rl_pool"].select(range(5))
    shards = shard_ranges(len(ds), 2)
    first = probe_shards(model, enc, ds, shards, tmp_path, **KW)
    assert first == {"shards_reused": 0, "shards_computed": 3}
    full = merge_shards(tmp_path, shards)
    shard_path(tmp_path, shards[2]).unlink()  # killed while probing the last shard
    (shard_path(tmp_path, shards[2]).parent / ".shard-x.parquet.tmp-1").write_bytes(b"torn")
    mtimes = [shard_path(tmp_path, s).stat().st_mtime_ns for s in shards[:2]]
    with pytest.raises(FileNotFoundError):
        merge_shards(tmp_path, shards)
    seen = []
    again = probe_shards(model, enc, ds, shards, tmp_path, progress=seen.append, **KW)
    assert again == {"shards_reused": 2, "shards_computed": 1} and sum(seen) == 5
    assert [shard_path(tmp_path, s).stat().st_mtime_ns for s in shards[:2]] == mtimes
    pd.testing.assert_frame_equal(full, merge_shards(tmp_path, shards))


def test_a_resumed_probe_costs_every_shard_once(tiny, world_small, tmp_path):
    """Each shard records its seconds before its table; the total is every shard's, the reused ones' too
    (what the table cost, not the last attempt's work), and None when a shard kept no record."""
    model, enc = tiny
    ds = world_small["rl_pool"].select(range(5))
    shards = shard_ranges(len(ds), 2)
    probe_shards(model, enc, ds, shards, tmp_path, **KW)
    first = {s: json.loads(shard_seconds_path(tmp_path, s).read_text()) for s in shards}
    assert all(r["cpu"] > 0 and r["wall"] > 0 for r in first.values())
    shard_path(tmp_path, shards[2]).unlink()  # killed while probing the last shard (its old record is stale)
    probe_shards(model, enc, ds, shards, tmp_path, **KW)
    again = json.loads(shard_seconds_path(tmp_path, shards[2]).read_text())
    total = shard_seconds(tmp_path, shards)
    assert total["cpu"] == pytest.approx(first[shards[0]]["cpu"] + first[shards[1]]["cpu"] + again["cpu"])
    assert total["wall"] == pytest.approx(first[shards[0]]["wall"] + first[shards[1]]["wall"] + again["wall"])
    shard_seconds_path(tmp_path, shards[0]).unlink()  # a shard probed before egt kept its seconds
    assert shard_seconds(tmp_path, shards) is None


def test_reasoning_entropy_over_the_think_tokens(tiny, world_small, monkeypatch):
    """Forced outputs: the reasoning entropy is the mean entropy of the tokens holding a character inside
    <think>…</think>; an output without reasoning gets NaN."""
    from egt.probe.locate import token_offsets

    model, enc = tiny
    tok = enc.tokenizer
    text = "<think>The image shows 2 circles.</think><answer>2</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    bare = tok("<answer>2</answer>", add_special_tokens=False)["input_ids"]
    forced = torch.tensor([ids, bare + [tok.eos_token_id] * (len(ids) - len(bare))])
    monkeypatch.setattr(probe_mod, "generate_batch", lambda *a, **k: forced)
    samples = list(world_small["rl_pool"].select(range(2)))
    rows = probe_batch(model, enc, samples, max_new_tokens=len(ids))
    batch = prompt_batch(enc, samples, "cpu")
    T = batch["input_ids"].shape[1]
    ent = token_entropy(_full_logits(model, batch, forced)[:, T - 1 : -1])
    a, b = len("<think>"), text.index("</think>")
    inside = [j for j, (s, e) in enumerate(token_offsets(tok, ids[:-1])) if s < b and e > a and e > s]
    assert inside and inside == list(range(inside[0], inside[-1] + 1))
    assert rows[0]["reasoning_entropy"] == pytest.approx(ent[0, inside].mean().item(), abs=1e-5)
    assert rows[0]["reasoning_entropies"] == [pytest.approx(rows[0]["reasoning_entropy"])]
    assert math.isnan(rows[1]["reasoning_entropy"]) and math.isfinite(rows[1]["answer_entropy"])


def test_both_orders_adds_the_swapped_probe(tiny, world_small, tmp_path):
    """probe.both_orders: the shown-order columns are the plain probe's, the *_swapped ones are the probe
    of the swapped samples (responses exchanged, label flipped)."""
    from egt.data.schema import swap_sample

    model, enc = tiny
    ds = world_small["rl_pool"].select(range(3))
    kw = dict(max_new_tokens=4, batch_size=2, chunk=7)
    plain = probe_shards(model, enc, ds, [(0, 3)], tmp_path / "plain", **kw)
    both = probe_shards(model, enc, ds, [(0, 3)], tmp_path / "both", both_orders=True, **kw)
    assert plain == both == {"shards_reused": 0, "shards_computed": 1}
    p, t = merge_shards(tmp_path / "plain", [(0, 3)]), merge_shards(tmp_path / "both", [(0, 3)])
    pd.testing.assert_frame_equal(p, t[p.columns])
    swapped = pd.DataFrame(probe_batch(model, enc, [swap_sample(x) for x in ds], max_new_tokens=4, chunk=7))
    for c in probe_mod.SWAPPED:
        got, want = t[f"{c}_swapped"].tolist(), swapped[c].tolist()
        if t[f"{c}_swapped"].dtype.kind == "f":
            assert got == pytest.approx(want, nan_ok=True), c
        else:
            assert [list(v) if c == "answers" else v for v in got] == want, c
    assert (swapped["label"] == 3 - t["label"]).all()


def test_keep_texts_adds_every_draws_text_and_changes_nothing_else(tiny, world_small, tmp_path):
    """probe.keep_texts: a ``texts`` column, every draw's output in draw order (the first is ``output``);
    the other columns are the plain probe's (same seeded draws)."""
    model, enc = tiny
    ds = world_small["rl_pool"].select(range(3))
    kw = dict(n=3, temperature=1.0, max_new_tokens=6, batch_size=2, chunk=7, seed=1)
    probe_shards(model, enc, ds, [(0, 3)], tmp_path / "plain", **kw)
    probe_shards(model, enc, ds, [(0, 3)], tmp_path / "texts", keep_texts=True, **kw)
    p, t = merge_shards(tmp_path / "plain", [(0, 3)]), merge_shards(tmp_path / "texts", [(0, 3)])
    assert "texts" not in p and list(t.columns) == [
        *p.columns[: list(t.columns).index("texts")],
        "texts",
        *[c for c in p.columns[list(t.columns).index("texts") :]],
    ]
    pd.testing.assert_frame_equal(p, t[p.columns])
    assert [len(x) for x in t["texts"]] == [3, 3, 3]
    assert [x[0] for x in t["texts"]] == t["output"].tolist()
