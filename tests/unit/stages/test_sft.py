"""The sft stage's records: the loss curve is the batch's true per-token loss whatever
``sft.accumulate_grad_batches`` is, and the summary counts the skips of both splits."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from egt.artifacts import ArtifactStore
from egt.data.encode import ChatEncoder, collate
from egt.data.sampler import ResumableSampler
from egt.models.loader import load_model_and_processor
from egt.sft.loss import sft_nll
from egt.sft.module import SFTModule
from egt.stages import sft as sft_stage

TARGETS = [
    "<think>short</think><answer>1</answer>",
    "<think>a much longer line of reasoning, with many tokens in it</think><answer>2</answer>",
    "<think>the square is red and blue</think><answer>1</answer>",
]


def _examples(tiny_model_dir, world_small):
    model, proc = load_model_and_processor(tiny_model_dir)
    enc = ChatEncoder(proc, max_length=1024)
    rows = list(world_small["sft_pool"].select(range(3)))
    return model.train(), proc.tokenizer.pad_token_id, [enc.encode_example(r, t) for r, t in zip(rows, TARGETS)]


def _recorded(model, pad, examples, k: int) -> list[float]:
    """The losses LossHistory records for one epoch of micro-batches of one sample at accumulation k."""
    sampler = ResumableSampler(len(examples), shuffle=False)
    counts = [int((e["labels"] != -100).sum()) for e in examples]
    module = SFTModule(model, 1e-3, 0.0, 0.0, 3, sampler, target_tokens=counts, accumulate=k, local_batch=1)
    history = sft_stage.LossHistory(time.perf_counter())
    dl = DataLoader(examples, batch_size=1, sampler=sampler, collate_fn=lambda b: collate(b, pad, "right"))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        accumulate_grad_batches=k,
        callbacks=[history],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(module, dl)
    return [v for _, v in history.losses]


def test_recorded_loss_is_the_per_token_loss_whatever_the_accumulation(tiny_model_dir, world_small):
    model, pad, examples = _examples(tiny_model_dir, world_small)
    with torch.no_grad():  # the true per-token loss of each sample, before any optimizer step
        truth = []
        for e in examples:
            nll, mask = sft_nll(model, collate([e], pad, "right"))
            truth.append(float((nll * mask).sum() / mask.sum()))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    at3 = _recorded(model, pad, examples, 3)  # one optimizer step after all three: all before it
    model.load_state_dict(state)
    at1 = _recorded(model, pad, examples, 1)  # the first before any step
    # the same fp32 forward on the same weights: only summation order can differ (~1e-6 relative)
    assert at3 == pytest.approx(truth, rel=1e-5)
    assert at1[0] == pytest.approx(truth[0], rel=1e-5)


def test_summary_skips_count_both_splits(tiny_model_dir, world_small, tmp_path):
    _, proc = load_model_and_processor(tiny_model_dir)
    pool = world_small["sft_pool"].select(range(10))
    joined = pool.add_column("target", ["word " * 400] * 10)  # every row over max_length: all bad
    for cache in (False, True):
        cfg = OmegaConf.create(
            {
                "seed": 0,
                "model": {},
                "data": {"on_bad_sample": "skip", "template": "minimal"},
                "sft": {"val_fraction": 0.3, "cache_encodings": cache, "cache_tensors": True, "max_length": 300},
            }
        )
        enc = ChatEncoder(proc, template="minimal", max_length=300)
        train_ds, val_ds, checked = sft_stage._datasets(cfg, ArtifactStore(tmp_path), {"key": "k"}, joined, enc)
        assert (len(train_ds), len(val_ds)) == (0, 0)
        assert (checked["checked"], checked["skipped"]) == (10, 10), cache
