"""SFT forward + backward on CPU: padded (sdpa) vs sft.packing under sdpa (dense block mask) vs packing under
model.attn_implementation=egt_varlen, side by side in one process (issue 37 items 3, 4).

On CPU ``egt.models.attention.resolve`` makes egt_varlen sdpa (torch's varlen kernel is CUDA-only); this script
registers egt_varlen with its ``reference`` kernel instead (one sdpa call per sequence: what the exactness tests
run), so the ``varlen`` rows show what cutting the rows into sequences saves against the dense W² mask on this CPU,
not the speed of the GPU kernel (benchmarks/gpu_check.sh part ``sftpack``). Each variant's loss is checked
against the padded run's (1e-5 relative) before it is timed.

    python benchmarks/bench_sft_packing_varlen.py --batch 8 --repeats 5 --threads 1

Model: the demo model's shape (conf/model/demo.yaml, ~4 M parameters, random weights), built in ``--workdir``;
samples: the synthetic world's SFT pool with targets of mixed length (``--min-words`` .. ``--max-words``),
images in every other sample. Prints one JSON line per variant and a table: median seconds of ``--repeats``
forward + backward passes of egt's SFT loss (egt.sft.loss.sft_nll, token reduction), the ratio padded / variant
(> 1: faster than padded), and the positions each runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build(workdir: Path) -> Path:
    from egt.models.builder import TinyVLMSpec, build_tiny_vlm
    from egt.models.corpus import world_corpus

    out = workdir / "demo_model"
    if (out / "config.json").exists():
        return out
    spec = TinyVLMSpec(
        hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=512, vision_depth=4,
        vision_hidden_size=128, vision_heads=4, vocab_size=800,
    )  # fmt: skip
    return build_tiny_vlm(out, spec, world_corpus(n=1000))


def samples(processor, n: int, min_words: int, max_words: int) -> list[dict]:
    from egt.data.encode import ChatEncoder
    from egt.data.world import make_world

    enc = ChatEncoder(processor)
    rows = list(make_world({"n_sft": n + 1, "n_rl": 2, "n_bench": 2})["sft_pool"].select(range(n)))
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        if i % 2:
            r["images"] = []
        words = min_words + (max_words - min_words) * i // max(1, n - 1)
        out.append(enc.encode_example(r, "<think>" + "a b " * words + "</think><answer>1</answer>"))
    return out


def fwd_bwd(model, batch) -> tuple[float, float]:
    from egt.sft.loss import sft_nll

    t0 = time.perf_counter()
    nll, mask = sft_nll(model, batch, chunk=128)
    loss = (nll * mask).sum() / mask.sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, float(loss.detach())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-words", type=int, default=10)
    p.add_argument("--max-words", type=int, default=120)
    p.add_argument("--budget", type=int, default=512, help="sft.packing_max_tokens of the budgeted variants")
    p.add_argument("--threads", type=int)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bench_sft_packing_varlen"))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from egt.data.encode import collate
    from egt.models import attention
    from egt.models.loader import load_model_and_processor
    from egt.sft.packing import pack_collate, token_counts

    path = build(Path(a.workdir))
    attention.register("reference")
    sdpa, proc = load_model_and_processor(path, attn_implementation="sdpa")
    varlen, _ = load_model_and_processor(path, attn_implementation="egt_varlen")
    pad = proc.tokenizer.pad_token_id
    exs = samples(proc, a.batch, a.min_words, a.max_words)
    variants = [
        ("padded, sdpa", sdpa, collate(exs, pad, "right")),
        ("packed one row, sdpa", sdpa, pack_collate(exs, pad, None)),
        (f"packed rows <= {a.budget}, sdpa", sdpa, pack_collate(exs, pad, a.budget)),
        ("packed one row, egt_varlen (reference kernel)", varlen, pack_collate(exs, pad, None)),
        (f"packed rows <= {a.budget}, egt_varlen (reference kernel)", varlen, pack_collate(exs, pad, a.budget)),
    ]
    for m in (sdpa, varlen):
        m.eval()  # no dropout; gradients flow
    results = []
    ref_loss = None
    for name, model, batch in variants:
        _, loss = fwd_bwd(model, batch)  # warm-up, and the exactness check
        ref_loss = loss if ref_loss is None else ref_loss
        if abs(loss - ref_loss) > 1e-5 * abs(ref_loss):
            raise SystemExit(f"{name}: loss {loss} is not the padded run's {ref_loss}")
        times = [fwd_bwd(model, batch)[0] for _ in range(a.repeats)]
        real, slots = token_counts(batch)
        row = {"variant": name, "s": round(statistics.median(times), 4), "shape": list(batch["input_ids"].shape)}
        row.update(real_tokens=real, positions=slots, loss=round(loss, 6))
        results.append(row)
        print(json.dumps(row), flush=True)
    base = results[0]["s"]
    print(f"\n| variant | [R, W] | positions | s fwd+bwd (median of {a.repeats}) | padded / variant |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['shape']} | {r['positions']} | {r['s']:.3f} | {base / r['s']:.2f} |")


if __name__ == "__main__":
    main()
