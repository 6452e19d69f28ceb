"""Decode tokens/s of egt's generate with generation.decode = dynamic | static | compiled, side by side in one
run (outside the test run; issue 37 item 6).

    python benchmarks/bench_decode.py --device cpu --shape tiny --batches 16 64   # the CPU check
    python benchmarks/bench_decode.py --device cuda --shape 7b --batches 64 16    # gpu_check.sh part `decode`

The model is benchmarks/bench_gpu_scale.py's random Qwen2.5-VL at the real shapes (one image per prompt,
``--image`` px); every row decodes exactly ``--new`` greedy tokens (min_new_tokens) through
:func:`egt.eval.generation.model_generate` with egt's generation config, as the probe and eval do. A mode's
first call at a batch size is a warm-up (for ``compiled``: the compile), its second is timed. tokens/s =
batch × new / seconds of the whole generate (prefill included, so it is what the probe and eval see).
``same_tokens``: the mode's ids equal dynamic's at that batch size. Each row is printed (JSON) as it ends, so
a timeout keeps the finished rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu_scale import build, inputs, sync  # noqa: E402

MODES = ("dynamic", "static", "compiled")


def run(model, batch: dict, mode: str, new: int, device: str) -> tuple[torch.Tensor, float]:
    from egt.eval.generation import generation_config, model_generate

    cfg = generation_config(new, 0.0, model.generation_config.pad_token_id, decode=mode, device=device)
    cfg.min_new_tokens = new
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        seq = model_generate(model, batch, cfg)
    sync(device)
    return seq[:, batch["input_ids"].shape[1] :], time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--prompt", type=int, default=320)
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype or ("bfloat16" if a.device == "cuda" else "float32"))
    torch.manual_seed(0)
    model = build(a.shape, a.attn, dtype, a.device).eval()
    for b in a.batches:
        batch = inputs(b, a.prompt, a.image, a.device, dtype)
        ref = None
        for mode in a.modes:
            run(model, batch, mode, a.new, a.device)  # warm-up / compile
            ids, s = run(model, batch, mode, a.new, a.device)
            ref = ids if mode == "dynamic" else ref
            row = {
                "shape": a.shape,
                "device": a.device,
                "dtype": str(dtype).removeprefix("torch."),
                "batch": b,
                "prompt": a.prompt,
                "new": a.new,
                "mode": mode,
                "seconds": round(s, 3),
                "tokens_per_s": round(b * a.new / s, 1),
                "same_tokens": None if ref is None else bool(torch.equal(ids, ref)),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
