"""How fast can a model learn to *see* the synthetic world? Direct VQA, no judging.

A learnability diagnostic for issue #2, outside the test suite. It trains a model on
one-word answers to the world's questions ("What colour is the triangle?" -> "red",
"Is there a blue square in the image?" -> "yes", "How many circles are there?" -> "2")
on a scene stream of its own, and prints the teacher-forced answer accuracy per
question kind on the clean bench every ``--eval-every`` steps. Nothing is saved unless
``--save`` is given. The judge's SFT has to learn the same perception through a long
prompt and a 30-token target; when this bare task does not learn, neither will it::

    python benchmarks/learn_perception.py --model artifacts/models/<key>/model \\
        --kinds color --max-objects 1 --lr 3e-4 --steps 500

Chance is 1/#colours for colour, 1/2 for existence. Single-thread CPU: about 0.13 s a
step at batch 16.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from egt.data.encode import IGNORE, ChatEncoder, collate, token_keys
from egt.data.world import WorldConfig, make_record, render_scene
from egt.distill.synthetic import _truth, _value
from egt.models.loader import load_model, load_processor


def answer(rec: dict) -> str:
    """The true one-word answer: ``2``, ``yes``, ``red`` (the synthetic teacher's words)."""
    meta = rec["meta"]
    return _value(meta["kind"], _truth(meta["kind"], meta["claims"][0], meta["scene"]))


class QuestionEncoder(ChatEncoder):
    """The project's encoder with the bare question as the prompt (image first), not the judge's."""

    def prompt_text(self, sample: dict) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample["query"]}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode(rec: dict, cfg: WorldConfig, encoder: QuestionEncoder) -> dict:
    """Prompt + answer, with the label on the answer's last token only. " red" and " yes" are
    one token each; a digit is split from its space, so a count is answered with the bare digit."""
    image = render_scene(rec["meta"]["scene"], cfg.image_size)
    value = answer(rec)
    target = value if value.isdigit() else " " + value
    ex = encoder.encode_example({"id": rec["id"], "query": rec["query"], "images": [image]}, target)
    first = int((ex["labels"] != IGNORE).nonzero()[0])
    keep = first + len(encoder.tokenizer(target, add_special_tokens=False)["input_ids"]) - 1
    labels = torch.full_like(ex["labels"], IGNORE)
    labels[keep] = ex["labels"][keep]
    ex["labels"] = labels
    for k in ("input_ids", "labels", *token_keys(ex)):  # the sequence ends at the answer
        ex[k] = ex[k][: keep + 1]
    return ex


@torch.no_grad()
def accuracy(model, bench: list[tuple[dict, str]], pad: int) -> dict[str, float]:
    model.eval()
    hits: dict[str, list[bool]] = {}
    for i in range(0, len(bench), 50):
        chunk = bench[i : i + 50]
        batch = collate([x for x, _ in chunk], pad)
        labels = batch.pop("labels")
        logits = model(**batch).logits
        where = (labels != IGNORE).float().argmax(1)
        rows = torch.arange(len(chunk))
        ok = logits[rows, where - 1].argmax(-1) == labels[rows, where]
        for (_, kind), hit in zip(chunk, ok.tolist()):
            hits.setdefault(kind, []).append(hit)
    model.train()
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--layout", default="free")
    ap.add_argument("--max-objects", type=int, default=3)
    ap.add_argument("--kinds", default="count,exist,color")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="save the trained model and processor here")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    model, processor = load_model(args.model), load_processor(args.model)
    cfg = WorldConfig(
        layout=args.layout, max_objects=args.max_objects, kind_weights={k: 1.0 for k in args.kinds.split(",")}
    )
    cfg.validate()
    recs = [make_record(cfg, "perception", i) for i in range(args.n_train)]  # a stream of its own
    encoder = QuestionEncoder(processor)
    train = [encode(r, cfg, encoder) for r in recs if not r["meta"]["ambiguous"]]
    bench = [(encode(r, cfg, encoder), r["meta"]["kind"]) for r in (make_record(cfg, "bench", i) for i in range(300))]
    pad = processor.tokenizer.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    model.train()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    print(
        f"{len(train)} training scenes; kinds {args.kinds}; max_objects {args.max_objects}; "
        f"layout {args.layout}; lr {args.lr}"
    )
    for step in range(args.steps + 1):
        if step % args.eval_every == 0:
            print(f"step {step:5d}  accuracy {accuracy(model, bench, pad)}  {time.time() - t0:.0f}s", flush=True)
        if step == args.steps:
            break
        idx = rng.choice(len(train), args.batch_size, replace=False)
        loss = model(**collate([train[i] for i in idx], pad)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)


if __name__ == "__main__":
    main()
