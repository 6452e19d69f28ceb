"""probe.answer_probs on the tiny model: p("1"), p("2") at the answer token are the full softmax of the raw
logits there, the same in both entropy_from modes; without the option the rows are unchanged."""

import math

import pandas as pd
import pytest
import torch

import egt.probe.probe as probe_mod
from egt.data.encode import ChatEncoder
from egt.eval.generation import prompt_batch
from egt.models.loader import load_model_and_processor
from egt.probe.answer_probs import answer_digit_ids, answer_prob_columns, logprobs_at
from egt.probe.probe import (
    ANSWER_PROB_COLUMNS,
    forced_hidden,
    generated_mask,
    generation_entropy,
    probe_batch,
    stop_token_ids,
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, processor = load_model_and_processor(tiny_model_dir)
    return model, ChatEncoder(processor)


def _forced(tok, texts):
    """Generated ids for ``texts`` (each + eos), right-padded with eos to one length.  → [B, G]"""
    rows = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    G = max(map(len, rows))
    return torch.tensor([r + [tok.eos_token_id] * (G - len(r)) for r in rows])


def _full_logits(model, batch, new):
    ids = torch.cat([batch["input_ids"], new], 1)
    kw = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    mask = torch.cat([batch["attention_mask"], torch.ones_like(new)], 1)
    if "mm_token_type_ids" in batch:
        kw["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(new)], 1)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **kw).logits  # [B, T+G, V]


def test_the_digit_ids_are_the_answer_formats_own(tiny):
    tok = tiny[1].tokenizer
    one, two = answer_digit_ids(tok)
    assert tok.decode([one]) == "1" and tok.decode([two]) == "2" and one != two


@pytest.mark.parametrize("entropy_from", ["teacher_forced", "generate"])
def test_answer_probs_are_the_full_softmax_at_the_answer_token(tiny, world_small, monkeypatch, entropy_from):
    """Forced outputs: answer 2, answer 1 twice (the reasoning's "2" is not the answer), no answer. The row's
    [p1, p2] is softmax(raw logits)[digit ids] at the answer token; NaN without an answer. In generate mode
    the forced tokens are fed to generate's head hook by a stand-in that scores them step by step."""
    model, enc = tiny
    tok = enc.tokenizer
    texts = [
        "<think>a</think><answer>2</answer>",
        "<think>the 2 circles</think><answer>1</answer>",
        "<think>no answer here",
    ]
    forced = _forced(tok, texts)
    samples = list(world_small["rl_pool"].select(range(3)))
    batch = prompt_batch(enc, samples, "cpu")

    def fake_generate(model, encoder, batch, *a, **k):  # runs the head once per new token, as generate does
        ids, mask = batch["input_ids"], batch["attention_mask"]
        kw = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
        for j in range(forced.shape[1]):
            x = torch.cat([ids, forced[:, :j]], 1)
            m = torch.cat([mask, torch.ones_like(forced[:, :j])], 1)
            extra = {}
            if "mm_token_type_ids" in batch:
                extra["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(forced[:, :j])], 1)
            model(input_ids=x, attention_mask=m, logits_to_keep=1, **kw, **extra)
        return forced

    monkeypatch.setattr(probe_mod, "generate_batch", fake_generate)
    rows = probe_batch(
        model, enc, samples, max_new_tokens=forced.shape[1], entropy_from=entropy_from, answer_probs=True
    )
    T = batch["input_ids"].shape[1]
    logp = _full_logits(model, batch, forced)[:, T - 1 : -1].float().log_softmax(-1)  # [B, G, V]
    digits = answer_digit_ids(tok)
    for i, want_answer in enumerate([2, 1]):
        ids = forced[i].tolist()
        j = max(k for k in range(len(ids)) if ids[k] == digits[want_answer - 1])  # the answer digit, the last
        want = logp[i, j, list(digits)].exp().tolist()
        assert rows[i]["answers"] == [want_answer]
        assert rows[i]["answer_probs"][0] == pytest.approx(want, abs=1e-6)  # fp32 softmax: rounding only
        label = int(samples[i]["label"])
        assert rows[i]["p_label"] == pytest.approx(want[label - 1], abs=1e-6)
        assert rows[i]["p_answer_1"] == pytest.approx(want[0], abs=1e-6)
        assert 0.0 < sum(want) <= 1.0
    assert all(math.isnan(p) for p in rows[2]["answer_probs"][0]) and math.isnan(rows[2]["p_label"])
    assert rows[0]["source"] == samples[0]["source"]


def test_without_the_option_the_rows_are_unchanged(tiny, world_small):
    model, enc = tiny
    samples = list(world_small["rl_pool"].select(range(2)))
    plain = probe_batch(model, enc, samples, max_new_tokens=6)
    torch.manual_seed(0)
    withp = probe_batch(model, enc, samples, max_new_tokens=6, answer_probs=True)
    assert not set(ANSWER_PROB_COLUMNS) & set(plain[0])
    pd.testing.assert_frame_equal(pd.DataFrame(withp).drop(columns=list(ANSWER_PROB_COLUMNS)), pd.DataFrame(plain))


def test_sampled_steps_read_while_generating_equal_the_teacher_forced_pass(tiny, world_small):
    """Sampled (T = 1) generation: the answer-digit log-probs the head hook keeps at every step are the
    teacher-forced pass's at every generated position (kernel rounding only: KV-cached steps against one
    full pass, fp32)."""
    model, enc = tiny
    samples = list(world_small["rl_pool"].select(range(3)))
    batch = prompt_batch(enc, samples, "cpu")
    digits = answer_digit_ids(enc.tokenizer)
    torch.manual_seed(3)
    new, _, picked = generation_entropy(model, enc, batch, max_new_tokens=8, temperature=1.0, answer_ids=digits)
    mask = generated_mask(new, stop_token_ids(model, enc.tokenizer))
    hidden, head = forced_hidden(model, batch, new)
    forced = logprobs_at(hidden, head, mask, digits)  # [B, G, 2]
    assert picked.shape == forced.shape == (*new.shape, 2) and mask.any()
    assert torch.allclose(picked[mask], forced[mask], atol=1e-5) and forced[~mask].isnan().all()


def test_logprobs_at_only_the_kept_positions():
    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    hidden = torch.tensor([[[math.log(2.0), 0.0], [0.0, 0.0]]])  # logits [ln 2, 0, 0] → p = [1/2, 1/4, 1/4]
    out = logprobs_at(hidden, head, torch.tensor([[True, False]]), (0, 1))
    assert out[0, 0].exp().tolist() == pytest.approx([0.5, 0.25], abs=1e-7) and out[0, 1].isnan().all()


def test_columns_of_a_sample_without_probabilities():
    c = answer_prob_columns([[math.nan, math.nan]], label=1)
    assert math.isnan(c["p_answer_1"]) and math.isnan(c["p_label"])
