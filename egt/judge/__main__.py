"""``python -m egt.judge rank --model PATH --data candidates.jsonl --out ranked.jsonl [--scheme knockout]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from egt.judge.tournament import SCHEMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m egt.judge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rank = sub.add_parser("rank", help="best-of-N for each prompt by pairwise judgements (both orders)")
    rank.add_argument("--model", required=True, help="a judge directory egt saved (or any, with --template)")
    rank.add_argument("--data", required=True, help="candidates.jsonl: id, images, question, candidates")
    rank.add_argument("--out", required=True, help="ranked.jsonl (a journal beside it makes the run resumable)")
    rank.add_argument(
        "--scheme",
        default="knockout",
        choices=sorted(SCHEMES),
        help="knockout: 2(n-1) calls; round_robin: n(n-1) calls",
    )
    rank.add_argument("--template", default=None, help="the prompt template of a checkpoint egt did not save")
    rank.add_argument("--batch-size", type=int, default=8)
    rank.add_argument("--max-new-tokens", type=int, default=None, help="default: the judge card's")
    rank.add_argument("--on-bad-sample", default="error", choices=["error", "skip"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from egt.artifacts import content_fingerprint
    from egt.judge import Judge
    from egt.judge.rank import rank_file

    judge = Judge.from_pretrained(
        args.model, args.template, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
    )
    settings = {
        "model": content_fingerprint(args.model),
        "template": judge.card["template"]["key"],
        "generation": judge.card["generation"],
        "max_new_tokens": judge.hf.max_new_tokens,
    }
    totals = rank_file(judge, args.data, args.out, args.scheme, settings, args.on_bad_sample)
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
