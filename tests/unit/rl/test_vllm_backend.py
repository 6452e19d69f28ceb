"""The vLLM rollout backend without vLLM: a fake engine with the same four calls checks the
prompts and sampling parameters it is given, the weights synced into it, and an RL fit through it."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from egt.data.encode import ChatEncoder
from egt.data.sampler import ResumableSampler
from egt.models.loader import load_model_and_processor, multimodal_token_ids
from egt.rl.advantages import BatchWhitenAdvantage
from egt.rl.filters import NormalisedAdvantageFilter
from egt.rl.losses import StableReinforceLoss
from egt.rl.module import RLModule
from egt.rl.rollout import rollout, stop_ids
from egt.rl.vllm_backend import VLLMEngine, VLLMRollout
from rl_stub import ShortIsGood  # tests/helpers


class FakeEngine:
    """Records what it is asked; 'generates' a fixed well-formed judgement (ending in the stop token)."""

    def __init__(self, tokenizer):
        self.reply = tokenizer.encode("<think>a</think><answer>1</answer>") + [tokenizer.eos_token_id]
        self.loads: list[dict[str, torch.Tensor]] = []
        self.calls: list[tuple[list, dict]] = []

    def sampling_params(self, **kw):
        return kw

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        return [self.reply[: 3 + i % 2 * 100] for i in range(len(prompts))]  # ragged: short and whole

    def load_weights(self, weights):
        self.loads.append({k: v.clone() for k, v in weights})


@pytest.fixture(scope="module")
def setup(tiny_model_dir, world_small):
    model, proc = load_model_and_processor(tiny_model_dir)
    return model, ChatEncoder(proc), world_small["rl_pool"].select(range(4))


def test_prompts_and_sampling_params(setup):
    model, enc, world = setup
    fake = FakeEngine(enc.tokenizer)
    backend = VLLMRollout(engine=fake)
    ro = rollout(model, backend, enc, list(world.select(range(2))), group_size=2, max_new_tokens=7, temperature=0.9)
    prompts, params = fake.calls[0]
    assert len(prompts) == 4 and prompts[0] == prompts[1]  # G copies of each prompt, in rollout order
    assert "<|image_pad|>" in prompts[0]["prompt"] and prompts[0]["multi_modal_data"]["image"].mode == "RGB"
    assert prompts[0]["prompt"] == enc.prompt_text(world[0])
    assert (params["temperature"], params["top_k"], params["top_p"], params["max_tokens"]) == (0.9, -1, 1.0, 7)
    assert enc.tokenizer.eos_token_id in params["stop_token_ids"]
    assert set(params["logit_bias"]) == set(multimodal_token_ids(enc.processor))
    whole = fake.reply
    assert ro.completion_ids.shape == (4, len(whole))
    assert ro.completion_ids[1].tolist() == whole and ro.texts[1] == "<think>a</think><answer>1</answer>"
    # padded after 3 tokens; the pad counts as a stop token (kept in the mask) when it is one, as with HF generate
    n = 4 if enc.tokenizer.pad_token_id in stop_ids(model, enc) else 3
    assert ro.completion_mask[0].tolist() == [1] * n + [0] * (len(whole) - n)
    greedy = VLLMRollout(engine=fake).sampling_kwargs(enc, model, 5, 0.0)
    assert greedy["temperature"] == 0.0 and "top_k" not in greedy


def test_weights_synced_every_n_steps(setup):
    model, enc, _ = setup
    fake = FakeEngine(enc.tokenizer)
    backend = VLLMRollout(engine=fake, sync_every=2)
    backend.sync(model, 0)
    name, p = next(iter(model.named_parameters()))
    assert set(fake.loads[0]) >= {n for n, _ in model.named_parameters()}
    assert torch.equal(fake.loads[0][name], p)
    with torch.no_grad():
        p.add_(1.0)
    backend.sync(model, 1)  # within sync_every: nothing loaded
    backend.sync(model, 2)
    assert len(fake.loads) == 2 and torch.equal(fake.loads[1][name], p)
    with torch.no_grad():
        p.sub_(1.0)
    with pytest.raises(ValueError, match="sync_every"):
        VLLMRollout(sync_every=0)


def test_rl_fit_through_the_vllm_backend_syncs_each_rollout(tiny_model_dir, world_small):
    model, proc = load_model_and_processor(tiny_model_dir)
    model.train()
    enc = ChatEncoder(proc)
    world = world_small["rl_pool"].select(range(6))
    fake = FakeEngine(enc.tokenizer)
    sampler = ResumableSampler(len(world), shuffle=False)
    m = RLModule(
        model,
        enc,
        ShortIsGood(),
        StableReinforceLoss(),
        BatchWhitenAdvantage(),
        NormalisedAdvantageFilter(),
        VLLMRollout(engine=fake),
        sampler,
        group_size=2,
        ppo_epochs=1,
        num_mini_batches=1,
        max_new_tokens=12,
        temperature=1.0,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        max_grad_norm=1.0,
        kl_coef=0.0,
        kl_estimator="k3",
        kl_in="loss",
        max_updates=2,
    )
    L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    ).fit(m, DataLoader(world, batch_size=3, sampler=sampler, collate_fn=list))
    assert m.rollouts == 2 and len(fake.calls) == 2 and len(fake.loads) == 2
    name = next(n for n, _ in model.named_parameters())
    assert not torch.equal(fake.loads[0][name], fake.loads[1][name])  # step 2 rolls out the updated policy


def test_without_vllm_the_error_says_what_to_do():
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")  # the message is only reachable without it
    except ImportError:
        pass
    with pytest.raises(ImportError, match="separate environment"):
        VLLMEngine("/nonexistent")
