"""What a judge has learned, position by position, on the synthetic world.

Teacher-forces the error-free synthetic teacher's reasoning on a world split and reports,
per question kind and target position, the mean NLL of the reference token and how often
it is the argmax. The compact teacher writes the same fields at the same positions
("Colour of the square: red. Response 1: blue, wrong. …"), so the table separates what
is copied from the prompt (the asked shape, each response's claim), what is perceived
(the value after the colon) and what is decided (right/wrong, the answer digit)::

    python -m egt.eval.positions --model artifacts/sft/<key>/model --data artifacts/data/<key>/dataset

``--template`` and ``--style`` must be what the model was trained with (defaults: the
world's, ``minimal`` and ``compact``).

A token that stays at ln(#options) NLL (1.10 for three shapes, 1.39 for four colours)
has not been learned at all.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from egt.data.encode import IGNORE, ChatEncoder, collate
from egt.data.schema import meta_dict

__all__ = ["aggregate", "format_report", "main", "position_report"]


def _new_acc() -> dict:
    return defaultdict(lambda: defaultdict(lambda: {"nll": 0.0, "hit": 0, "n": 0, "tokens": Counter()}))


def _accumulate(
    acc: dict,
    logprobs: torch.Tensor,
    labels: torch.Tensor,
    kinds: Sequence[str],
    tokens: Any,
    prefix: Sequence[int] | None = None,
) -> None:
    if logprobs.shape[:2] != labels.shape or len(kinds) != labels.shape[0]:
        raise ValueError(
            f"shapes disagree: logprobs {tuple(logprobs.shape)}, labels {tuple(labels.shape)}, {len(kinds)} kinds"
        )
    ref = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, T]
    hit = logprobs.argmax(-1) == labels
    for b, kind in enumerate(kinds):
        where = (labels[b] != IGNORE).nonzero().flatten().tolist()
        skip = prefix[b] if prefix is not None else 0
        for i, t in enumerate(where):
            # a scene description's tokens form their own table; the rest count from its end
            cell = acc["scene"][i] if i < skip else acc[kind][i - skip]
            cell["nll"] -= float(ref[b, t])
            cell["hit"] += int(hit[b, t])
            cell["n"] += 1
            cell["tokens"][tokens(int(labels[b, t]))] += 1


def _finish(acc: dict) -> dict[str, list[dict]]:
    return {
        kind: [
            {
                "pos": pos,
                "tokens": [t for t, _ in c["tokens"].most_common(4)],
                "options": len(c["tokens"]),
                "nll": c["nll"] / c["n"],
                "acc": c["hit"] / c["n"],
                "n": c["n"],
            }
            for pos, c in sorted(cells.items())
        ]
        for kind, cells in sorted(acc.items())
    }


def aggregate(
    logprobs: torch.Tensor,
    labels: torch.Tensor,
    kinds: Sequence[str],
    tokens: Any = str,
    prefix: Sequence[int] | None = None,
) -> dict[str, list[dict]]:
    """Per kind and target position: mean NLL, argmax accuracy, count, commonest tokens.

    ``logprobs`` [B, T, V] predict ``labels`` [B, T] at the same index (already shifted);
    positions are counted from each sample's first labelled token. ``tokens`` maps a token
    id to its text (the ``tokens`` column); ``options`` is how many distinct reference
    tokens a position had. ``prefix[b]`` leading target tokens of sample ``b`` (a scene
    description) go to the kind ``scene`` instead, and its other positions count from the
    first token after them.
    """
    acc = _new_acc()
    _accumulate(acc, logprobs, labels, kinds, tokens, prefix)
    return _finish(acc)


@torch.no_grad()
def position_report(
    model: Any,
    processor: Any,
    samples: Sequence[dict],
    targets: Sequence[str],
    template: str = "minimal",
    batch_size: int = 16,
    describe: bool = False,
) -> dict[str, list[dict]]:
    """:func:`aggregate` over ``samples`` (world rows with ``meta.kind``) and their ``targets``;
    ``describe``: the targets open with a one-sentence scene description (kind ``scene``)."""
    import torch.nn.functional as F

    encoder = ChatEncoder(processor, template=template, max_length=100_000)
    tok = encoder.tokenizer
    acc = _new_acc()
    model.eval()
    for i in range(0, len(samples), batch_size):
        rows, tgts = samples[i : i + batch_size], targets[i : i + batch_size]
        batch = collate([encoder.encode_example(r, t) for r, t in zip(rows, tgts)], tok.pad_token_id)
        labels = batch.pop("labels")
        logits = model(**batch).logits[:, :-1].float()
        kinds = [meta_dict(r["meta"])["kind"] for r in rows]
        labels = labels[:, 1:]
        prefix = [_sentence_length(row[row != IGNORE].tolist(), tok) for row in labels] if describe else None
        _accumulate(acc, F.log_softmax(logits, -1), labels, kinds, tokens=lambda t: tok.decode([t]), prefix=prefix)
    return _finish(acc)


def _sentence_length(ids: Sequence[int], tok: Any) -> int:
    """How many of ``ids`` make up the first sentence (through the first token with a '.')."""
    for i, t in enumerate(ids):
        if "." in tok.decode([t]):
            return i + 1
    return len(ids)


def format_report(report: dict[str, list[dict]]) -> str:
    """Markdown: one table per kind, chance NLL ln(options) beside the measured one."""
    lines = []
    for kind, rows in report.items():
        lines += [
            f"### {kind}",
            "",
            "| pos | token(s) | NLL | ln(options) | argmax acc | n |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            toks = " / ".join(repr(t)[1:-1] for t in r["tokens"])
            lines.append(
                f"| {r['pos']} | `{toks}` | {r['nll']:.3f} | {math.log(r['options']):.2f} | {r['acc']:.2f} | {r['n']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import datasets

    from egt.distill.synthetic import SyntheticTeacher
    from egt.distill.teacher import strip_label
    from egt.models.loader import load_model, load_processor

    ap = argparse.ArgumentParser(prog="python -m egt.eval.positions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an HF model directory (e.g. artifacts/sft/<key>/model)")
    ap.add_argument("--data", required=True, help="the data stage's dataset directory (a DatasetDict)")
    ap.add_argument("--split", default="bench")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--template", default="minimal", help="data.template the model was trained with")
    ap.add_argument("--style", default="compact", help="the synthetic teacher's style (distill.teacher.style)")
    ap.add_argument(
        "--describe",
        action="store_true",
        help="the teacher described the scene first "
        "(distill.teacher.describe=true); its tokens get their own table, 'scene'",
    )
    ap.add_argument("--json", default=None, help="also write the report as JSON here")
    args = ap.parse_args(argv)

    ds = datasets.load_from_disk(args.data)[args.split]
    ds = ds.select(range(min(args.n, len(ds))))
    rows = [ds[i] for i in range(len(ds))]
    teacher = SyntheticTeacher(error_base=0.0, error_slope=0.0, style=args.style, describe=args.describe)
    targets = teacher.generate([strip_label(r) for r in rows], attempt=0)
    report = position_report(
        load_model(args.model),
        load_processor(args.model),
        rows,
        targets,
        template=args.template,
        describe=args.describe,
    )
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
