"""Hand-worked values for the RL tensor functions (docs/design.md §5)."""

import math

import pytest
import torch

from egt.rl import functional as F
from egt.rl.advantages import BatchWhitenAdvantage, GroupAdvantage
from egt.rl.batch import RolloutBatch
from egt.rl.filters import NoFilter, NormalisedAdvantageFilter, R1CodeFilter
from egt.rl.losses import PPOClipLoss, StableReinforceLoss


def test_group_advantages_known_group_and_zero_variance():
    # group 1: rewards 0, 2 → mean 1, std 1 → ∓1; group 2: all 1.5 → 0 (no NaN)
    adv = F.group_advantages(torch.tensor([0.0, 2.0, 1.5, 1.5]), group_size=2)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 1.0, 0.0, 0.0]), atol=1e-5, rtol=0)
    # G = 4: rewards 2, 0, 0, 0 → mean .5, std √.75
    adv = F.group_advantages(torch.tensor([2.0, 0.0, 0.0, 0.0]), group_size=4, eps=0.0)
    s = math.sqrt(0.75)
    torch.testing.assert_close(adv, torch.tensor([1.5 / s, -0.5 / s, -0.5 / s, -0.5 / s]))
    with pytest.raises(ValueError, match="groups of 3"):
        F.group_advantages(torch.zeros(4), 3)


def test_batch_whiten_ignores_groups():
    adv = BatchWhitenAdvantage(eps=0.0)(RolloutBatch.of_rewards(torch.tensor([1.0, 1.0, 3.0, 3.0]), group_size=2))
    torch.testing.assert_close(adv, torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    assert torch.all(F.batch_whiten(torch.full((5,), 2.0)) == 0)  # constant batch → 0, no NaN
    torch.testing.assert_close(
        GroupAdvantage(unbiased=False)(RolloutBatch.of_rewards(torch.tensor([1.0, 3.0]), 2)),
        torch.tensor([-1.0, 1.0]),
        atol=1e-5,
        rtol=0,
    )


def test_preclip_bounds():
    lr = F.preclip_log_ratio(torch.tensor([[-50.0, -1.0, 0.0, 1.0, 50.0]]), torch.zeros(1, 5))
    torch.testing.assert_close(lr, torch.tensor([[math.log(1e-3), -1.0, 0.0, 1.0, math.log(1e3)]]))
    assert torch.isfinite(lr.exp()).all()
    assert F.PRECLIP_LOW == pytest.approx(-6.907755) and F.PRECLIP_HIGH == pytest.approx(6.907755)


@pytest.mark.parametrize(
    "ratio,adv,loss,clipped",
    [
        (1.0, 1.0, -1.0, False),  # on-policy: −ρÂ
        (1.1, 1.0, -1.1, False),  # inside [0.8, 1.2]
        (1.5, 1.0, -1.2, True),  # Â > 0 and ρ > 1+ε: capped at 1.2
        (0.5, 1.0, -0.5, False),  # Â > 0 and ρ < 1−ε: the unclipped (smaller) term is taken
        (0.5, -1.0, 0.8, True),  # Â < 0 and ρ < 1−ε: capped at 0.8
        (1.5, -1.0, 1.5, False),  # Â < 0 and ρ > 1+ε: unclipped, pessimistic
        (1.2, 2.0, -2.4, False),  # exactly at the bound: not counted as clipped
    ],
)
def test_ppo_clip_terms(ratio, adv, loss, clipped):
    out, was = F.ppo_clip_loss(torch.tensor([[math.log(ratio)]]), torch.tensor([adv]), clip_eps=0.2)
    assert out.item() == pytest.approx(loss, abs=1e-5)
    assert bool(was.item()) is clipped


def test_filters_masks_and_denominators():
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    adv = F.batch_whiten(rewards)  # the one 2.0 is (2 − .125)/.484 ≈ 3.87 σ away
    batch = RolloutBatch.of_rewards(rewards)
    keep, denom = NormalisedAdvantageFilter(z=3.0)(batch, adv)
    assert keep.tolist() == [True] * 15 + [False] and torch.equal(keep, denom)
    keep, denom = R1CodeFilter(z=3.0)(batch, adv)  # Â 3.87 vs raw bounds 0.125 ± 3: out, stays in the denominator
    assert keep.tolist() == [True] * 15 + [False] and denom.all()
    keep, denom = R1CodeFilter(z=5.0)(batch, adv)  # 0.125 ± 5: nothing dropped
    assert keep.all() and denom.all()
    keep, denom = NoFilter()(batch, adv)
    assert keep.all() and denom.all()


def test_aggregate_denominators_for_both_filters():
    per_token = torch.tensor([[2.0, 4.0], [6.0, 0.0], [10.0, 10.0]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    keep = torch.tensor([True, True, False])
    # sequence means 3, 6, 10
    assert F.aggregate(per_token, mask).item() == pytest.approx(19 / 3)
    assert F.aggregate(per_token, mask, keep, keep).item() == pytest.approx(9 / 2)  # paper: dropped from both
    assert F.aggregate(per_token, mask, keep, torch.ones(3, dtype=torch.bool)).item() == pytest.approx(9 / 3)  # code


def test_kl_estimators_known_values():
    logp = torch.tensor([math.log(0.5), math.log(0.25)])
    ref = torch.tensor([math.log(0.25), math.log(0.5)])
    torch.testing.assert_close(F.kl_k1(logp, ref), torch.tensor([math.log(2), -math.log(2)]))
    # k3 = r − log r − 1 with r = π_ref/π: r = .5 → .5 + log 2 − 1; r = 2 → 2 − log 2 − 1
    torch.testing.assert_close(F.kl_k3(logp, ref), torch.tensor([math.log(2) - 0.5, 1 - math.log(2)]))
    assert F.kl_k3(logp, logp).abs().max() == 0


def test_token_logprobs_entropy_and_completion_mask():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    assert F.token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.25))
    assert F.token_logprobs(logits.to(torch.bfloat16), torch.tensor([[0]])).dtype == torch.float32
    assert F.token_entropy(logits).item() == pytest.approx(1.5 * math.log(2))
    # temperature 2 flattens the distribution: log-probs are of softmax(logits / T)
    flat = F.token_logprobs(torch.tensor([[[2.0, 0.0]]]), torch.tensor([[0]]), temperature=2.0)
    assert flat.item() == pytest.approx(math.log(math.e / (math.e + 1)))
    m = F.completion_mask(torch.tensor([[7, 1, 2, 1], [3, 3, 3, 3], [2, 0, 0, 0]]), stop_ids=[2])
    assert m.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_losses_classes():
    logp = torch.tensor([[0.0, 0.0], [math.log(1.5), -20.0]], requires_grad=True)
    old = torch.zeros(2, 2)
    mask = torch.tensor([[1, 1], [1, 1]])
    adv = torch.tensor([1.0, -1.0])
    ppo = PPOClipLoss()(logp, old, adv, mask)
    sr = StableReinforceLoss()(logp, old, adv, mask)
    # seq 0: −1 per token; seq 1: Â<0 → max(ρ, clip(ρ))·1 per token: 1.5 and 0.8 → mean 1.15
    assert ppo.loss.item() == pytest.approx((-1.0 + 1.15) / 2, abs=1e-5)
    assert sr.loss.item() == pytest.approx((-1.0 + 1.15) / 2, abs=1e-5)
    assert sr.clip_frac.item() == pytest.approx(0.25)  # the ρ = e^-20 token
    big = torch.tensor([[100.0]], requires_grad=True)  # ρ = e^100: pre-clip keeps the ratio at 1e3
    out = StableReinforceLoss()(big, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1))
    assert out.loss.item() == pytest.approx(1e3, rel=1e-4)
    out.loss.backward()
    assert big.grad.item() == 0.0  # clamped: no gradient through the pre-clip


# ------------------------------------------------- chunked log-probs from hidden states
def _reference(hidden, head, targets, temperature):
    logits = head(hidden)  # [B, L, V]: what the chunked version never holds
    return F.token_logprobs(logits, targets, temperature), F.token_entropy(logits, temperature)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_token_logprobs_equal_the_unchunked_reference_with_gradients(chunk, temperature):
    torch.manual_seed(0)
    B, L, H, V = 3, 5, 8, 50
    head = torch.nn.Linear(H, V, bias=False)
    hidden = torch.randn(B, L, H, requires_grad=True)
    targets = torch.randint(0, V, (B, L))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])
    ref_lp, ref_ent = _reference(hidden, head, targets, temperature)
    lp, ent = F.chunked_token_logprobs(hidden, head, targets, temperature, mask=mask, chunk=chunk, with_entropy=True)
    m = mask.bool()
    torch.testing.assert_close(lp[m], ref_lp[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[m], ref_ent[m], atol=1e-5, rtol=0)
    assert torch.all(lp[~m] == 0) and torch.all(ent[~m] == 0) and not ent.requires_grad
    # gradients w.r.t. the hidden states and the head's weight, through the recomputed chunks
    w = torch.randn(B, L) * mask
    g_ref = torch.autograd.grad((ref_lp * w).sum(), [hidden, head.weight])
    g = torch.autograd.grad((lp * w).sum(), [hidden, head.weight])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_chunked_token_logprobs_hand_values_and_errors():
    head = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0], [1.0]]))  # logits (0, h)
    h = torch.tensor([[[0.0], [math.log(3.0)]]])  # p(1) = 1/2, then 3/4
    lp, ent = F.chunked_token_logprobs(h, head, torch.tensor([[1, 1]]), chunk=1, with_entropy=True)
    torch.testing.assert_close(lp.detach().exp(), torch.tensor([[0.5, 0.75]]))
    h34 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(ent, torch.tensor([[math.log(2.0), h34]]))
    lp_none, ent_none = F.chunked_token_logprobs(h, head, torch.tensor([[1, 1]]), mask=torch.zeros(1, 2))
    assert torch.all(lp_none == 0) and ent_none is None
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        F.chunked_token_logprobs(h, head, torch.tensor([[1, 1]]), chunk=0)


def test_chunked_token_logprobs_leave_suppressed_tokens_out_of_the_normaliser():
    head = torch.nn.Linear(1, 3, bias=False)
    torch.nn.init.zeros_(head.weight)  # uniform over 3 tokens; token 2 can never be sampled
    with torch.no_grad():
        lp, ent = F.chunked_token_logprobs(
            torch.ones(1, 2, 1), head, torch.tensor([[0, 1]]), suppress_ids=[2], with_entropy=True
        )
    torch.testing.assert_close(lp.exp(), torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(ent, torch.full((1, 2), math.log(2.0)))  # 0 · log 0 counts 0, not NaN
