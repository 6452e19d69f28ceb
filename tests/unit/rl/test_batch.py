"""egt.rl.batch: what an advantage estimator and a filter see of a rollout, checked field by field
against the rollout the RL module ran (tiny model, one step)."""

import math

import lightning as L
import torch
from torch.utils.data import DataLoader

from egt.data.encode import ChatEncoder
from egt.data.sampler import ResumableSampler
from egt.models.loader import load_model_and_processor
from egt.rl.advantages import AdvantageEstimator, BatchWhitenAdvantage
from egt.rl.batch import RolloutBatch
from egt.rl.filters import AdvantageFilter, FilterResult, NormalisedAdvantageFilter
from egt.rl.losses import StableReinforceLoss
from egt.rl.module import RLModule
from egt.rl.rollout import HFGenerateBackend
from rl_stub import ShortIsGood  # tests/helpers


class Recording(AdvantageEstimator):
    def __init__(self):
        self.seen: list[RolloutBatch] = []

    def __call__(self, batch):
        self.seen.append(batch)
        return BatchWhitenAdvantage()(batch)


class KeepAccurate(AdvantageFilter):
    """A filter only the wider interface can express: rows with R_acc = 1 count."""

    def __call__(self, batch, advantages):
        keep = batch.acc > 0
        return FilterResult(keep, torch.ones_like(keep))


def test_the_estimator_sees_every_reward_term_length_group_and_score(tiny_model_dir, world_small):
    world = world_small["rl_pool"].select(range(3))
    model, proc = load_model_and_processor(tiny_model_dir)
    model.train()
    sampler = ResumableSampler(len(world), shuffle=False)
    recording = Recording()
    scores = {world[0]["id"]: 0.25, world[1]["id"]: math.inf}  # the third sample has no score
    m = RLModule(
        model,
        ChatEncoder(proc),
        ShortIsGood(),
        StableReinforceLoss(),
        recording,
        NormalisedAdvantageFilter(),
        HFGenerateBackend(),
        sampler,
        group_size=2,
        ppo_epochs=1,
        num_mini_batches=1,
        max_new_tokens=8,
        temperature=1.0,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        max_grad_norm=1.0,
        kl_coef=0.0,
        kl_estimator="k3",
        kl_in="loss",
        max_updates=1,
        scores=scores,
    )
    L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    ).fit(m, DataLoader(world, batch_size=3, sampler=sampler, collate_fn=list))
    (batch,) = recording.seen
    texts = [e["output"] for e in m.history[0]["examples"]]  # log_examples=2: the first two rows
    terms = ShortIsGood().terms([s for s in world for _ in range(2)][:2], texts)
    assert len(batch) == 6 and batch.group_size == 2 and batch.group_ids.tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(batch.rewards[:2], torch.tensor(terms.reward), atol=1e-6, rtol=0)
    assert batch.acc[:2].tolist() == terms.acc and batch.format[:2].tolist() == terms.format
    assert batch.lengths.dtype == torch.long and ((batch.lengths >= 1) & (batch.lengths <= 8)).all()
    assert batch.scores[:4].tolist() == [0.25, 0.25, math.inf, math.inf] and batch.scores[4:].isnan().all()
    assert float(m.history[0]["rl/response_len"]) == float(batch.lengths.float().mean())


def test_a_filter_may_decide_by_reward_terms():
    batch = RolloutBatch.of_rewards(torch.tensor([0.0, 2.0, 0.5, 1.5]), 2, acc=torch.tensor([0.0, 1.0, 0.0, 1.0]))
    keep, denom = KeepAccurate()(batch, BatchWhitenAdvantage()(batch))
    assert keep.tolist() == [False, True, False, True] and denom.all()
