"""Throughput of the openai teacher + fidelity filter against the loopback fake (outside the test run).

    python benchmarks/bench_teacher_http.py [--latency 0.05] [--samples 128] [--concurrency 1 8 32]

The fake (tests/helpers/openai_fake.py) sleeps ``latency`` seconds per request and
answers with the label, so every sample takes exactly one request: req/s measures
the client (pool, base64 images, JSON, journal fsync per result) against a
fixed-latency server. The ideal is concurrency / latency.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from egt.data.world import make_world  # noqa: E402
from egt.distill.fidelity import run_fidelity_filter  # noqa: E402
from egt.distill.openai_teacher import OpenAITeacher  # noqa: E402
from egt.distill.teacher import RequestBudget  # noqa: E402
from egt.utils.io import Journal  # noqa: E402
from openai_fake import FakeOpenAI  # noqa: E402


def measure(samples: list[dict], latency: float, concurrency: int) -> dict:
    with FakeOpenAI(samples, answer="label", latency=latency) as fake, tempfile.TemporaryDirectory() as tmp:
        teacher = OpenAITeacher(fake.url, "fake", api_key_env=None, seed=0)
        t0 = time.perf_counter()
        state = run_fidelity_filter(
            teacher, samples, Journal(Path(tmp) / "journal.jsonl"), concurrency=concurrency, budget=RequestBudget(None)
        )
        seconds = time.perf_counter() - t0
        assert len(state.kept) == len(samples), (len(state.kept), len(samples))
        assert state.requests == len(fake.calls), (state.requests, len(fake.calls), dict(state.retries))
    return {
        "concurrency": concurrency,
        "requests": state.requests,
        "seconds": round(seconds, 3),
        "req_s": round(state.requests / seconds, 1),
        "ideal_req_s": round(concurrency / latency, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    samples = list(make_world({"n_sft": args.samples, "n_rl": 1, "n_bench": 1})["sft_pool"])
    rows = [measure(samples, args.latency, c) for c in args.concurrency]
    base = rows[0]["req_s"]
    print(f"loopback fake, {args.latency * 1000:.0f} ms per request, {len(samples)} samples (1 request each)")
    print("| concurrency | req/s | ideal req/s | speed-up vs c=%d | seconds |" % rows[0]["concurrency"])
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['req_s']} | {r['ideal_req_s']} | {r['req_s'] / base:.2f}x | {r['seconds']} |")


if __name__ == "__main__":
    main()
