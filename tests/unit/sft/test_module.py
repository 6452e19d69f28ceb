import math

import pytest

from egt.sft.module import warmup_cosine


def test_warmup_then_cosine_hand_values():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    # halfway through the cosine part: 0.5 * (1 + cos(pi/2)) = 0.5
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(5, 100, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.05)))


# ------------------------------------------------------------------ token-weighted loss
import torch  # noqa: E402

from egt.data.encode import ChatEncoder, collate  # noqa: E402
from egt.data.sampler import ResumableSampler  # noqa: E402
from egt.models.loader import load_model_and_processor  # noqa: E402
from egt.sft.loss import reduce_nll, sft_nll, step_window  # noqa: E402
from egt.sft.module import SFTModule  # noqa: E402


def test_token_weighting_on_the_hand_example():
    # one step of two micro-batches: 1 target token with loss 4, then 3 tokens with loss 0
    a, ma = torch.tensor([[4.0]]), torch.ones(1, 1, dtype=torch.bool)
    b, mb = torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool)
    mean_of_means = (reduce_nll(a, ma, "token", 1, 1) + reduce_nll(b, mb, "token", 3, 1)) / 2
    assert float(mean_of_means) == pytest.approx(2.0)  # what micro-batch means optimise
    weighted = (reduce_nll(a, ma, "token", 4, 2, scale=2) + reduce_nll(b, mb, "token", 4, 2, scale=2)) / 2
    assert float(weighted) == pytest.approx(1.0)  # Lightning's ÷ acc undone: Σ NLL / 4 tokens
    per_sequence = (reduce_nll(a, ma, "sequence", 4, 2, scale=2) + reduce_nll(b, mb, "sequence", 4, 2, scale=2)) / 2
    assert float(per_sequence) == pytest.approx(2.0)  # (4 + 0) / 2 sequences
    with pytest.raises(ValueError, match="loss_reduction"):
        reduce_nll(a, ma, "mean", 1, 1)


def test_step_window_spans_ranks_and_accumulation():
    order = list(range(12))
    # W = 2, local batch 2, acc = 2: one step = 8 global positions; rank 0's 3rd batch starts the 2nd step
    assert step_window(order, 2, 2, 2, local_consumed=0) == list(range(8))
    assert step_window(order, 2, 2, 2, local_consumed=2) == list(range(8))
    assert step_window(order, 2, 2, 2, local_consumed=4) == [8, 9, 10, 11]


@pytest.mark.parametrize("reduction,chunk", [("token", 256), ("sequence", 7), ("token", None)])
def test_accumulated_gradient_equals_the_one_batch_gradient(tiny_model_dir, world_small, reduction, chunk):
    model, proc = load_model_and_processor(tiny_model_dir)
    model.train()
    enc, pad = ChatEncoder(proc, max_length=1024), proc.tokenizer.pad_token_id
    rows = list(world_small["sft_pool"].select(range(3)))
    targets = [
        "Response 1.",
        "<think>a much longer line of reasoning, with many tokens in it</think><answer>2</answer>",
        "<think>short</think><answer>1</answer>",
    ]
    examples = [enc.encode_example(r, t) for r, t in zip(rows, targets)]
    counts = [int((e["labels"] != -100).sum()) for e in examples]
    assert len(set(counts)) == 3  # the micro-batches differ in tokens
    params = [p for p in model.parameters() if p.requires_grad]
    # reference: the whole step as one batch, token mean (or mean of sequence means)
    nll, mask = sft_nll(model, collate(examples, pad, "right"))
    m = mask.float()
    ref = (nll * m).sum() / m.sum() if reduction == "token" else ((nll * m).sum(-1) / m.sum(-1)).mean()
    g_ref = torch.autograd.grad(ref, params)
    if reduction == "token":  # egt's chunked NLL is transformers' own causal-LM loss
        hf = model(**collate(examples, pad, "right")).loss
        torch.testing.assert_close(ref.detach(), hf.detach(), atol=1e-5, rtol=0)
    # egt: three micro-batches of one sequence, accumulated (Lightning divides each loss by acc)
    sampler = ResumableSampler(3, shuffle=False)
    module = SFTModule(
        model,
        1e-3,
        0.0,
        0.0,
        1,
        sampler,
        target_tokens=counts,
        loss_reduction=reduction,
        accumulate=3,
        local_batch=1,
        world_size=1,
        chunk_size=chunk,
    )
    grads = [torch.zeros_like(p) for p in params]
    for e in examples:
        loss = module.training_step(collate([e], pad, "right"), 0)["loss"] / 3
        for acc, g in zip(grads, torch.autograd.grad(loss, params)):
            acc += g
    for a, b in zip(grads, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
