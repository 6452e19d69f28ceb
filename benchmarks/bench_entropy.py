"""Time and peak extra memory of full-vocabulary entropy on CPU (outside the test run).

    python benchmarks/bench_entropy.py [--vocab 151936] [--hidden 896] [--lengths 256 512 1024 2048]
        [--repeats 3] [--chunk 2048] [--vocab-block N] [--variants egt trl] [--check] [--out FILE.json]

Compares, from the same last hidden states [L, H] and output head nn.Linear(H, V):
  egt      egt.probe.entropy.chunked_entropy_from_hidden (positions in chunks, head blocked over the
           vocabulary, one pass with a running max; --chunk, --vocab-block)
  egt128   the same function given a head it cannot block (a lambda): [128, V] logits per chunk, the
           egt code before the vocabulary blocking
  trl      logits = head(h) for all positions, then TRL's ``entropy_from_logits``, reproduced below
           (TRL need not be installed)
  naive    logits = head(h), then −Σ softmax · log_softmax over all positions at once
Each (variant, length, repeat) runs in a fresh process, variants alternating within a repeat (the
order rotates between repeats) so a change in machine load hits all of them alike; the 1-minute
load average is recorded beside every run. Printed: min / median / max wall seconds, the median of
CPU seconds (user + system) and of peak extra memory (the rise of the process's max RSS over what the
inputs already hold), and the ratios of medians to trl. ``--check`` instead prints each variant's
largest absolute error against float64 references (``--head-scale`` sharpens the distributions).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("egt", "egt128", "trl", "naive")


def trl_entropy_from_logits(logits, chunk_size: int = 128):
    """TRL's ``entropy_from_logits``, trl 1.16.0, ``trl/trainer/utils.py`` (line 604), copied. The fused
    Triton branch at its top only runs on CUDA/XPU (``_supports_trl_loss_kernel``), so on CPU it is this
    loop: log_softmax, exp, product and sum per chunk of 128 rows of the full logits."""
    import torch
    import torch.nn.functional as F

    original_shape = logits.shape[:-1]
    num_classes = logits.shape[-1]
    flat_logits = logits.reshape(-1, num_classes)
    entropies = []
    for chunk in flat_logits.split(chunk_size, dim=0):
        logps = F.log_softmax(chunk, dim=-1)
        chunk_entropy = -(torch.exp(logps) * logps).sum(-1)
        entropies.append(chunk_entropy)
    entropies = torch.cat(entropies, dim=0)
    return entropies.reshape(original_shape)


def _setup(L: int, V: int, H: int):
    import torch

    torch.manual_seed(0)
    h = torch.randn(L, H)
    head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad():
        head.weight.normal_(0, H**-0.5)
    torch.set_grad_enabled(False)
    return h, head


def _fn(variant: str, h, head, chunk: int, vocab_block: int | None):
    import torch

    from egt.probe.entropy import chunked_entropy_from_hidden

    if variant == "egt":
        return lambda: chunked_entropy_from_hidden(h[None], head, chunk=chunk, vocab_block=vocab_block)[0]
    if variant == "egt128":
        return lambda: chunked_entropy_from_hidden(h[None], lambda x: head(x), chunk=128)[0]
    if variant == "trl":
        return lambda: trl_entropy_from_logits(head(h))
    if variant == "naive":

        def naive():
            logp = torch.log_softmax(head(h).float(), -1)
            return -(logp.exp() * logp).sum(-1)

        return naive
    raise ValueError(f"unknown variant {variant!r}; one of {VARIANTS}")


def _child(variant: str, L: int, V: int, H: int, chunk: int, vocab_block: int | None) -> None:
    h, head = _setup(L, V, H)
    fn = _fn(variant, h, head, chunk, vocab_block)
    base = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "variant": variant,
                "L": L,
                "seconds": sec,
                "extra_mb": (r.ru_maxrss - base.ru_maxrss) / 1024,
                "cpu_seconds": r.ru_utime + r.ru_stime - base.ru_utime - base.ru_stime,
                "checksum": float(out.sum()),
            }
        )
    )


def _check(
    variants: list[str], lengths: list[int], V: int, H: int, chunk: int, vocab_block: int | None, scale: float
) -> None:
    """Largest |variant − reference| per length, against two float64 references (256 rows at a time):
    the entropy of float64 logits (all rounding), and the float64 entropy of the fp32 logits (the
    entropy arithmetic alone: the fp32 logits' own rounding is the same in every variant)."""
    import torch

    def entropy64(z):
        logp = torch.log_softmax(z.double(), -1)
        return -(logp.exp() * logp).sum(-1)

    for L in lengths:
        h, head = _setup(L, V, H)
        head.weight.mul_(scale)
        w = head.weight.double()
        ref = torch.cat([entropy64(part @ w.T) for part in h.double().split(256)])
        ref32 = torch.cat([entropy64(head(part)) for part in h.split(256)])
        got = {v: _fn(v, h, head, chunk, vocab_block)().double() for v in variants}
        print(
            json.dumps(
                {
                    "L": L,
                    "head_scale": scale,
                    "entropy_range": [float(ref.min()), float(ref.max())],
                    "max_abs_error": {v: float((g - ref).abs().max()) for v, g in got.items()},
                    "max_abs_error_same_fp32_logits": {v: float((g - ref32).abs().max()) for v, g in got.items()},
                }
            )
        )


def _stats(xs: list[float]) -> tuple[float, float, float]:
    return min(xs), statistics.median(xs), max(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--hidden", type=int, default=896)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--vocab-block", type=int, default=None, help="default: egt's own (2^24 // chunk rows)")
    ap.add_argument("--variants", nargs="+", default=["egt", "trl"], choices=VARIANTS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--head-scale", type=float, default=1.0, help="--check: multiply the head (sharper distributions)")
    ap.add_argument("--out")
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        return _child(a.child[0], int(a.child[1]), a.vocab, a.hidden, a.chunk, a.vocab_block)
    if a.check:
        return _check(a.variants, a.lengths, a.vocab, a.hidden, a.chunk, a.vocab_block, a.head_scale)
    import torch

    print(
        f"V={a.vocab} H={a.hidden} chunk={a.chunk} vocab_block={a.vocab_block or 'auto'} "
        f"threads={torch.get_num_threads()} repeats={a.repeats}"
    )
    runs = []
    for L in a.lengths:
        for r in range(a.repeats):
            k = r % len(a.variants)
            for v in a.variants[k:] + a.variants[:k]:
                cmd = [
                    sys.executable,
                    __file__,
                    "--vocab",
                    str(a.vocab),
                    "--hidden",
                    str(a.hidden),
                    "--chunk",
                    str(a.chunk),
                    "--child",
                    v,
                    str(L),
                ]
                cmd += ["--vocab-block", str(a.vocab_block)] if a.vocab_block else []
                load = os.getloadavg()[0]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                runs.append({**json.loads(out), "repeat": r, "load1": load})
    print(
        f"{'L':>5} {'variant':>7} {'wall s min/med/max':>20} {'cpu s':>6} {'extra MB':>8} {'load':>9} "
        f"{'time/trl':>8} {'mem/trl':>7}"
    )
    for L in a.lengths:
        med = {}
        for v in a.variants:
            rs = [x for x in runs if x["L"] == L and x["variant"] == v]
            med[v] = {k: statistics.median(x[k] for x in rs) for k in ("seconds", "cpu_seconds", "extra_mb")}
            med[v]["wall"], med[v]["load"] = _stats([x["seconds"] for x in rs]), _stats([x["load1"] for x in rs])
        for v in a.variants:
            m, t = med[v], med.get("trl")
            lo, mid, hi = m["wall"]
            ratios = f"{m['seconds'] / t['seconds']:>8.2f} {m['extra_mb'] / max(t['extra_mb'], 1):>7.2f}" if t else ""
            print(
                f"{L:>5} {v:>7} {lo:>6.2f}/{mid:>5.2f}/{hi:>6.2f} {m['cpu_seconds']:>6.2f} {m['extra_mb']:>8.0f} "
                f"{m['load'][0]:>4.1f}–{m['load'][2]:<4.1f} {ratios}"
            )
        sums = {x["variant"]: x["checksum"] for x in runs if x["L"] == L}
        assert max(sums.values()) - min(sums.values()) < 1e-3 * L, sums
    if a.out:
        with open(a.out, "w") as f:
            json.dump(
                {
                    "version": 2,
                    "config": {k: v for k, v in vars(a).items() if k not in ("child", "out")},
                    "threads": torch.get_num_threads(),
                    "runs": runs,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
