"""The egt judge as the reward of TRL's ``GRPOTrainer``: one real training step, the adapter called by TRL itself.

The policy is a tiny text-only causal LM (TRL's VLM path needs torchvision's processors, which must not be
installed here); the judge is the real tiny egt judge (:class:`egt.judge.Judge` on the tiny Qwen2.5-VL), scoring
each completion with the image of its dataset row. An untrained tiny judge parses no verdict (every reward would be
None), so the fixture first teaches it, teacher-forced on egt's own encoder, to answer ``<answer>1</answer>`` on a
blue image and the unparseable ``<answer>3</answer>`` on a red one, whatever the responses. Then every reward is
known from the row's image alone: ½ (a position tie: both orders say "1") on a blue row, None on a red row (TRL: NaN,
left out of its mean), 0 for an empty completion; so a wrong image, a wrong row or a wrong NaN rule shows.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from PIL import Image

trl = pytest.importorskip("trl")

from egt.data.encode import collate  # noqa: E402
from egt.judge import Judge  # noqa: E402
from egt.judge.adapters import TRLJudgeReward  # noqa: E402

COLOURS = {"blue": "<answer>1</answer>", "red": "<answer>3</answer>"}  # what the judge is taught to say
WORDS = "two three red blue circle square is there a the How many What colour yes no".split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))


@pytest.fixture(scope="module")
def colour_judge(tiny_model_dir) -> Judge:
    """The tiny judge taught to answer from the image's colour alone (measured 2026-12-08, 2 shared cores: 25, 30
    and 40 steps at lr 3e-3 each gave the taught answer on 40 of 40 fresh pairs; lr 1e-2 did not learn it)."""
    judge = Judge.from_pretrained(tiny_model_dir, template="minimal", max_new_tokens=8, batch_size=8)
    rng, model = random.Random(0), judge.model
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    pad = judge.encoder.tokenizer.pad_token_id
    for _ in range(40):
        batch = []
        for colour, target in COLOURS.items():
            for _ in range(2):
                item = {"images": [Image.new("RGB", (56, 56), colour)], "query": _text(rng)}
                batch.append(
                    judge.encoder.encode_example({**item, "response_1": _text(rng), "response_2": _text(rng)}, target)
                )
        loss = model(**collate(batch, pad)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return judge


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    """A tiny random text-only Qwen2 on the tiny judge's tokenizer."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).float(), tok


class Recording(TRLJudgeReward):
    """The adapter, keeping what TRL passed it and what it returned."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: list[tuple[dict, list]] = []

    def __call__(self, prompts, completions, **columns):
        out = super().__call__(prompts, completions, **columns)
        self.calls.append(({"prompts": list(prompts), "completions": list(completions), **columns}, list(out)))
        return out


def test_the_colour_judge_answers_from_the_image(colour_judge):
    rng = random.Random(1)
    for colour, want in (("blue", 1), ("red", None)):
        items = [
            {"images": [Image.new("RGB", (56, 56), colour)], "question": _text(rng), "response_1": _text(rng)}
            for _ in range(3)
        ]
        vs = colour_judge.compare_many([{**it, "response_2": _text(rng)} for it in items], order="both")
        assert [(v.verdict, v.swapped_verdict) for v in vs] == [(want, None if want is None else 2)] * 3, vs


def test_grpo_trainer_one_step_with_the_judge_as_reward(colour_judge, policy, tmp_path):
    from datasets import Dataset, Features, Image as ImageFeature, Value
    from trl import GRPOConfig, GRPOTrainer

    model, tok = policy
    rows = {
        "prompt": ["How many blue circles?", "What colour is the square?"],
        "judge_image": [Image.new("RGB", (56, 56), "blue"), Image.new("RGB", (56, 56), "red")],
        "solution": ["two", "red"],
    }
    features = Features({"prompt": Value("string"), "judge_image": ImageFeature(), "solution": Value("string")})
    ds = Dataset.from_dict(rows, features=features)
    reference = Recording(colour_judge, mode="reference", reference_column="solution", image_column="judge_image")
    group = Recording(colour_judge, mode="group", image_column="judge_image")
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reference, group], args=args, train_dataset=ds, processing_class=tok
    )
    trainer.train()
    # one optimizer step ran. The policy need not move: GRPO's advantage is zero in a group of equal rewards
    assert trainer.state.global_step == 1 and "train_loss" in trainer.state.log_history[-1]

    (seen, out), (gseen, gout) = reference.calls[0], group.calls[0]
    assert len(reference.calls) == len(group.calls) == 1
    assert sorted(seen["prompts"]) == sorted(rows["prompt"] * 2) and len(seen["completions"]) == 4
    # what TRL generated: the completion ids it passed decode to the completions the adapter scored
    assert seen["completions"] == tok.batch_decode(seen["completion_ids"], skip_special_tokens=True)
    assert gseen["completions"] == seen["completions"]
    # the rewards, known from each row's image (see the module docstring)
    colour = {"How many blue circles?": "blue", "What colour is the square?": "red"}
    for p, c, img, r in zip(seen["prompts"], seen["completions"], seen["judge_image"], out):
        assert img.getpixel((0, 0)) == Image.new("RGB", (1, 1), colour[p]).getpixel((0, 0))  # the row's own image
        assert r == (0.0 if not c.strip() else 0.5 if colour[p] == "blue" else None), (p, c, out)
    # group mode: every match a tie (blue: the orders disagree; red: unparsed), so ½ a non-empty completion
    for k in range(0, 4, 2):
        a, b = seen["completions"][k : k + 2]
        want = [0.5, 0.5] if a.strip() and b.strip() else [float(bool(a.strip())), float(bool(b.strip()))]
        assert gout[k : k + 2] == want, gout

    # what TRL logged for each adapter is its mean over the rows it scored (None: NaN, left out)
    (logged,) = [h for h in trainer.state.log_history if "rewards/egt_judge_reference/mean" in h]
    for name, values in (("egt_judge_reference", out), ("egt_judge_group", gout)):
        scored = [v for v in values if v is not None]
        mean = sum(scored) / len(scored) if scored else math.nan
        assert logged[f"rewards/{name}/mean"] == pytest.approx(mean, abs=1e-6, nan_ok=True), (name, logged)
        assert 0.0 <= logged[f"rewards/{name}/mean"] <= 1.0 or math.isnan(mean)
    # TRL's reward: the two adapters summed a row (a None counts 0 unless both are None), averaged
    total = [None if a is None and b is None else (a or 0.0) + (b or 0.0) for a, b in zip(out, gout)]
    total = [t for t in total if t is not None]
    assert logged["reward"] == pytest.approx(sum(total) / len(total), abs=1e-6)
