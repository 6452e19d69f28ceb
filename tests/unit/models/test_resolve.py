"""load_for_training honours model.freeze_vision and model.gradient_checkpointing (SFT and RL both load
through it), and a training step then leaves the vision tower untouched."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from PIL import Image

from egt.models.resolve import load_for_training
from egt.sft.module import SFTModule


def _cfg(freeze: bool, ckpt: bool):
    return OmegaConf.create(
        {
            "model": {
                "dtype": "float32",
                "attn_implementation": "sdpa",
                "trust_remote_code": False,
                "freeze_vision": freeze,
                "gradient_checkpointing": ckpt,
            }
        }
    )


def _checkpointing(model) -> bool:
    return bool(
        getattr(model, "is_activation_checkpointing", None)
        if hasattr(model, "is_activation_checkpointing")
        else model.is_gradient_checkpointing
    )


def _batch(processor):
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many circles?"}]},
        {"role": "assistant", "content": "<think>two</think><answer>1</answer>"},
    ]
    text = processor.apply_chat_template(msgs, tokenize=False)
    batch = processor(
        text=[text, text], images=[Image.new("RGB", (56, 56), (200, 30, 40))] * 2, return_tensors="pt", padding=True
    )
    batch["labels"] = batch["input_ids"].clone()
    return dict(batch)


def test_frozen_vision_and_gradient_checkpointing_are_honoured(tiny_model_dir):
    model, processor = load_for_training(tiny_model_dir, _cfg(freeze=True, ckpt=True))
    assert model.training and _checkpointing(model) and model.config.use_cache is False
    vision = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" in n}
    assert vision and not any(p.requires_grad for n, p in model.named_parameters() if "visual" in n)
    text = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" not in n}
    module = SFTModule(model, lr=1e-2, weight_decay=0.0, warmup_ratio=0.0, total_steps=1)
    opt = module.configure_optimizers()["optimizer"]
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(t.numel() for t in text.values())
    loss = model(**_batch(processor)).loss
    loss.backward()
    opt.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in vision.items())
    assert any(not torch.equal(after[n], v) for n, v in text.items())


def test_defaults_train_everything(tiny_model_dir):
    model, _ = load_for_training(tiny_model_dir, _cfg(freeze=False, ckpt=False))
    assert not _checkpointing(model) and all(p.requires_grad for p in model.parameters())
