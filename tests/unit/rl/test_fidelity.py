"""egt against the code the paper ran (R1-Reward's OpenRLHF fork, yfzhang114/r1_reward@3693413) and the
GRPO peers (TRL, verl, OpenRLHF), on hand-worked inputs (issue 34; docs/design.md §5, §11). Each test
pins one of the six behaviours so a later change cannot drift silently."""

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from egt.cli import CONF_DIR
from egt.rl import functional as F
from egt.rl.advantages import BatchWhitenAdvantage, GroupAdvantage, TokenWhitenAdvantage
from egt.rl.batch import RolloutBatch
from egt.rl.filters import NormalisedAdvantageFilter, R1CodeFilter
from egt.rl.judges.base import LogicJudge
from egt.rl.module import _filtered
from egt.rl.reward import CompositeReward
from egt.rl.rules import R1Accuracy, R1Format, StrictAccuracy, StrictFormat


def _batch(rewards, lengths=None, group_size=1):
    r = torch.tensor(rewards, dtype=torch.float32)
    given = {} if lengths is None else {"lengths": torch.tensor(lengths, dtype=torch.long)}
    return RolloutBatch.of_rewards(r, group_size, **given)


# 1. REINFORCE++ whitening over tokens --------------------------------------------------------------
def test_token_whitening_weighs_each_sequence_by_its_length():
    # μ = (0·1 + 1·3)/4 = .75; v = (1·.5625 + 3·.0625)/4 = .1875; Â = (r − .75)/.4330
    b = _batch([0.0, 1.0], lengths=[1, 3])
    torch.testing.assert_close(TokenWhitenAdvantage()(b), torch.tensor([-math.sqrt(3), 1 / math.sqrt(3)]))
    torch.testing.assert_close(BatchWhitenAdvantage(eps=0.0)(b), torch.tensor([-1.0, 1.0]))


def test_token_whitening_is_whitening_of_the_token_vector():
    g = torch.Generator().manual_seed(0)
    rewards, lengths = torch.rand(7, generator=g) * 2, torch.randint(1, 9, (7,), generator=g)
    tokens = torch.repeat_interleave(rewards, lengths)  # every action token carries its sequence's return
    per_token = (tokens - tokens.mean()) / tokens.var(unbiased=False).sqrt()
    expected = torch.stack([per_token[s : s + n][0] for s, n in zip(torch.cumsum(lengths, 0) - lengths, lengths)])
    torch.testing.assert_close(F.token_whiten(rewards, lengths), expected)
    # equal lengths: the per-sequence whitening
    torch.testing.assert_close(F.token_whiten(rewards, torch.full((7,), 5)), F.batch_whiten(rewards, eps=0.0))


def test_token_whitening_of_a_constant_batch_is_zero():
    assert torch.equal(F.token_whiten(torch.full((4,), 1.5), torch.tensor([1, 2, 3, 4])), torch.zeros(4))


# 2. R1-Reward's released filter --------------------------------------------------------------------
def test_r1_code_filter_is_one_sided():
    b = _batch([2.0, 2.0, 2.0, 0.0])  # Â = [.577 ×3, −1.732], raw mean 1.5: bounds [−1.5, 4.5]
    adv = TokenWhitenAdvantage()(b)
    keep, denom = R1CodeFilter()(b, adv)
    assert keep.tolist() == [True, True, True, False] and denom.all()  # zeroed, still in the denominator
    keep, denom = NormalisedAdvantageFilter()(b, adv)  # the paper's |Â| ≤ 3 keeps all four
    assert keep.all()
    b = _batch([0.0, 0.0, 0.0, 2.0])  # mirror: Â = [−.577 ×3, 1.732], raw mean .5: bounds [−2.5, 3.5]
    assert R1CodeFilter()(b, TokenWhitenAdvantage()(b)).keep.all()


def test_r1_code_filter_raw_mean_is_over_tokens():
    # rewards [2, 0] lengths [3, 1]: token mean 1.5 → Â [.577, −1.732] → the 0 is out; per sequence mean 1 → kept
    b = _batch([2.0, 0.0], lengths=[3, 1])
    adv = TokenWhitenAdvantage()(b)
    assert R1CodeFilter()(b, adv).keep.tolist() == [True, False]
    assert R1CodeFilter(token_weighted=False)(b, adv).keep.tolist() == [True, True]


def test_r1_code_filter_drops_large_and_non_finite_advantages():
    b = _batch([0.0, 0.0, 0.0, 0.0, 0.0])
    adv = torch.tensor([0.5, float("nan"), float("inf"), 10.5, -9.5])
    keep = R1CodeFilter(z=100.0)(b, adv).keep  # bounds ±100 never bite here: the |Â| ≤ 10 cut does
    assert keep.tolist() == [True, False, False, False, True]


def test_dropped_rows_reach_the_loss_with_advantage_zero():
    class Nan:
        def __call__(self, batch):
            return torch.tensor([1.0, float("nan"), -1.0])

    adv, keep, denom = _filtered(_batch([0.0, 1.0, 2.0]), Nan(), R1CodeFilter())
    assert adv.tolist() == [1.0, 0.0, -1.0] and keep.tolist() == [True, False, True] and denom.all()


# 3. and 4. the reward's rules ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,r1,strict",
    [
        ("<think>a</think><answer>2</answer>", 1.0, 1.0),
        ("<think>a</think>\n<answer>2</answer>", 0.0, 1.0),  # R1: nothing between </think> and <answer>
        ("  <think>a</think><answer>2</answer>\n", 1.0, 1.0),  # both strip the output
        ("<think>a</think></think><answer>2</answer>", 1.0, 0.0),  # R1 counts opening tags only
        ("<think>a</think><answer>2</answer></answer>", 1.0, 0.0),
        ("<think>a<think>b</think><answer>2</answer>", 0.0, 0.0),
        ("<think>a</think><answer>2</answer> trailing", 0.0, 0.0),
        ("<answer>2</answer>", 0.0, 0.0),
    ],
)
def test_format_rules(text, r1, strict):
    assert R1Format()([{}], [text]) == [r1] and StrictFormat()([{}], [text]) == [strict]


@pytest.mark.parametrize(
    "text,r1,strict",
    [
        ("<think>x</think><answer>2</answer>", 2, 2),
        ("Response 2", 2, None),  # no tag: the whole text
        ("<think>x</think><answer>Response 2</answer>", 2, None),
        ("<think>x</think><answer>\\boxed{2}</answer>", 2, None),
        ("<answer>2</answer><answer>1</answer>", 2, None),  # the first of several tags
        ("<answer>The answer is Response 1, not Response 2</answer>", 2, None),  # the last number (math_verify)
        ("<answer>\\boxed{2}, not Response 1</answer>", 2, None),  # a box wins
        ("<answer>12</answer>", 12, None),
        ("<answer>2.0</answer>", 2, None),
        ("<answer>2", None, None),  # unclosed: math_verify reads nothing in '>2'
        ("<answer>none</answer>", None, None),
    ],
)
def test_accuracy_rules(text, r1, strict):
    assert R1Accuracy().answer(text) == r1 and StrictAccuracy().answer(text) == strict
    assert R1Accuracy()([{}], [text], label=[2]) == [float(r1 == 2)]


class Recorder(LogicJudge):
    def __init__(self):
        self.answers = []

    def verdicts(self, items):
        self.answers += [i.answer for i in items]
        return [1] * len(items)


def test_composite_reward_with_each_rule_set():
    texts = ["<think>a</think>\n<answer>2</answer>", "Response 2", "<think>a</think><answer>Response 2</answer>"]
    judge = Recorder()
    r1 = CompositeReward(judge=judge).terms([{"label": 2}] * 3, texts)  # the default: R1-Reward's rules
    assert (r1.acc, r1.format, r1.reward) == ([1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.5, 1.5, 2.0])
    assert judge.answers == [2, 2, 2]  # the judge is told the answer the rule read
    strict = CompositeReward(judge=Recorder(), accuracy=StrictAccuracy(), format=StrictFormat())
    t = strict.terms([{"label": 2}] * 3, texts)
    assert (t.acc, t.format, t.reward) == ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [2.0, 0.0, 0.5])


def test_a_rule_of_the_wrong_kind_is_refused():
    with pytest.raises(TypeError, match="egt.rl.rules.AccuracyRule"):
        CompositeReward(accuracy=R1Format())


# 5. KL clamp ---------------------------------------------------------------------------------------
def test_kl_clamp_bounds_k1_and_k3_and_stops_their_gradient():
    logp = torch.tensor([-1.0, -1.0, -20.0], requires_grad=True)
    ref = torch.tensor([-1.0, 12.0, -1.0])  # d = 0, 13, 19
    k3 = F.kl_term(logp, ref, "k3", clamp=10.0)
    assert k3.tolist() == [0.0, 10.0, 10.0]
    k3.sum().backward()
    assert logp.grad.tolist() == [0.0, 0.0, 0.0]
    k1 = F.kl_term(torch.tensor([-1.0, -30.0, -1.0]), torch.tensor([-1.0, -1.0, -30.0]), "k1", clamp=10.0)
    assert k1.tolist() == [0.0, -10.0, 10.0]
    assert F.kl_term(logp.detach(), ref, "k3")[1].item() == pytest.approx(math.exp(13) - 14, rel=1e-6)


# 6. GRPO σ -----------------------------------------------------------------------------------------
def test_group_sigma_population_and_unbiased():
    b = _batch([1.0, 0.0, 0.0, 0.0], group_size=4)
    pop, unb = GroupAdvantage(eps=0.0, unbiased=False)(b), GroupAdvantage(eps=0.0)(b)
    assert pop[0].item() == pytest.approx(math.sqrt(3)) and unb[0].item() == pytest.approx(1.5)
    torch.testing.assert_close(unb, pop * math.sqrt(3 / 4))  # TRL / verl / OpenRLHF: ×√((G−1)/G)
    one = GroupAdvantage(unbiased=True)(_batch([1.0, 2.0], group_size=1))
    assert one.tolist() == [0.0, 0.0]  # a group of one: 0, not NaN


@pytest.mark.parametrize("G", [2, 4, 10])
def test_group_advantage_bounds(G):
    outlier = torch.zeros(G)
    outlier[0] = 1.0
    assert F.group_advantages(outlier, G, eps=0.0).max().item() == pytest.approx(math.sqrt(G - 1))
    assert F.group_advantages(outlier, G, eps=0.0, unbiased=True).max().item() == pytest.approx((G - 1) / math.sqrt(G))
    g = torch.Generator().manual_seed(G)
    r = torch.randint(0, 5, (200 * G,), generator=g).float() / 2  # rewards on the composite's grid
    assert F.group_advantages(r, G).abs().max() <= math.sqrt(G - 1) + 1e-5


# the defaults -------------------------------------------------------------------------------------
def _compose(overrides):
    import egt.config  # noqa: F401  (registers the schema)

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("overrides", [[], ["experiment=paper", "data.path=/data"]])
def test_stable_reinforce_and_paper_run_what_r1_reward_ran(overrides):
    cfg = _compose(overrides)
    assert cfg.rl.advantage._target_.endswith("TokenWhitenAdvantage") and cfg.rl.kl_clamp is None
    assert cfg.reward.accuracy._target_.endswith("R1Accuracy") and cfg.reward.format._target_.endswith("R1Format")


def test_grpo_runs_what_its_peers_run():
    cfg = _compose(["rl=grpo"])
    assert cfg.rl.advantage.unbiased is True and cfg.rl.kl_clamp == 10.0
    assert _compose(["rl/advantage=group"]).rl.advantage.unbiased is True
