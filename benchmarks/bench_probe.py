"""The probe's cost against the plain baseline, and whether generation-time logits give its entropies
(outside the test run).

    python benchmarks/bench_probe.py --model DIR [--batch 8] [--new-tokens 48] [--repeats 3] [--check]

Variants, each timed over one left-padded batch of ``rl_pool`` prompts in a fresh process (after one
short warm-up generate), alternating within a repeat, the order rotating between repeats:
  teacher_forced  egt's default probe: greedy generate, then one teacher-forced pass whose last hidden
                  states go through the output head in blocks (egt.probe.probe._generate_then_score)
  generate        egt's probe.entropy_from=generate: entropies read by a hook on the output head during
                  generate, one [B, V] step at a time (egt.probe.probe.generation_entropy)
  hf_logits       the plain baseline: HF generate with output_logits=True, return_dict_in_generate=True,
                  entropies from the stacked [B, G, V] logits (egt.probe.entropy.token_entropy)
All three decode with egt's generation config (greedy, multimodal placeholders suppressed). Printed:
min / median / max wall seconds, medians of CPU seconds and of peak extra memory (the rise of max RSS
over the loaded model), the 1-minute load range, and ratios of medians to hf_logits. ``--check``
instead runs the three on the same batch in one process and prints whether the generated tokens are
the same and the largest entropy difference to teacher_forced on generated tokens; ``--head-scale``
multiplies the output head (sharper distributions than a random model's, like a trained one's) and
``--temperature`` > 0 checks a sampled generation (the teacher-forced pass scores the drawn tokens).
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

VARIANTS = ("teacher_forced", "generate", "hf_logits")


def _setup(model_dir: str, batch_size: int, head_scale: float = 1.0):
    import torch

    from egt.data.encode import ChatEncoder
    from egt.data.world import make_world
    from egt.eval.generation import prompt_batch
    from egt.models.loader import load_model_and_processor

    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    model, processor = load_model_and_processor(model_dir)
    model.get_output_embeddings().weight.mul_(head_scale)  # > 1: sharper, trained-like distributions
    encoder = ChatEncoder(processor)
    samples = list(make_world({"n_sft": 8, "n_rl": batch_size, "n_bench": 8})["rl_pool"])
    return model, encoder, prompt_batch(encoder, samples, "cpu")


def _run(variant: str, model, encoder, batch, new_tokens: int, chunk: int):
    """(new ids [B, G], generated mask [B, G], entropies [B, G], 0 off the mask)."""
    import torch

    from egt.eval.generation import generation_config, model_generate
    from egt.models.loader import multimodal_token_ids
    from egt.probe.entropy import token_entropy
    from egt.probe.probe import ENTROPY_FROM, generated_mask, stop_token_ids

    stops = stop_token_ids(model, encoder.tokenizer)
    if variant in ENTROPY_FROM:
        return ENTROPY_FROM[variant](model, encoder, batch, stops, new_tokens, 0.0, None, chunk)[:3]
    config = generation_config(
        new_tokens, 0.0, encoder.tokenizer.pad_token_id, suppress_ids=multimodal_token_ids(encoder.processor)
    )
    config.output_logits, config.return_dict_in_generate = True, True
    out = model_generate(model, batch, config)
    new = out.sequences[:, batch["input_ids"].shape[1] :]  # [B, G]
    mask = generated_mask(new, stops)
    return new, mask, token_entropy(torch.stack(out.logits, 1)) * mask  # [B, G, V] → [B, G]


def _child(variant: str, a: argparse.Namespace) -> None:
    model, encoder, batch = _setup(a.model, a.batch, a.head_scale)
    _run("teacher_forced", model, encoder, batch, 2, a.chunk)  # warm-up: first-call allocations, lazy inits
    base = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    new, mask, ent = _run(variant, model, encoder, batch, a.new_tokens, a.chunk)
    sec = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "variant": variant,
                "seconds": sec,
                "cpu_seconds": r.ru_utime + r.ru_stime - base.ru_utime - base.ru_stime,
                "extra_mb": (r.ru_maxrss - base.ru_maxrss) / 1024,
                "B": int(new.shape[0]),
                "G": int(new.shape[1]),
                "tokens": int(mask.sum()),
                "V": int(model.get_output_embeddings().weight.shape[0]),
                "checksum": float(ent.sum()),
            }
        )
    )


def _check(a: argparse.Namespace) -> None:
    import torch

    model, encoder, batch = _setup(a.model, a.batch, a.head_scale)
    if a.temperature > 0:  # sampled: teacher-force the tokens the hooked generate drew
        from egt.probe.probe import generated_mask, generation_entropy, stop_token_ids, teacher_forced_entropy

        torch.manual_seed(0)
        new, ent = generation_entropy(model, encoder, batch, a.new_tokens, a.temperature)
        mask = generated_mask(new, stop_token_ids(model, encoder.tokenizer))
        ref = teacher_forced_entropy(model, batch, new, mask, a.chunk)
        print(
            json.dumps(
                {
                    "model": a.model,
                    "head_scale": a.head_scale,
                    "temperature": a.temperature,
                    "tokens": int(mask.sum()),
                    "entropy_range": [float(ref[mask].min()), float(ref[mask].max())],
                    "generate_max_abs_diff": float((ent - ref)[mask].abs().max()),
                }
            )
        )
        return
    res = {v: _run(v, model, encoder, batch, a.new_tokens, a.chunk) for v in VARIANTS}
    new, mask, ref = res["teacher_forced"]
    top = float(model(**batch, logits_to_keep=1).logits.abs().max())  # the logits' scale, at the first new token
    print(
        json.dumps(
            {
                "model": a.model,
                "head_scale": a.head_scale,
                "B": int(new.shape[0]),
                "G": int(new.shape[1]),
                "tokens": int(mask.sum()),
                "max_abs_logit": top,
                "entropy_range": [float(ref[mask].min()), float(ref[mask].max())],
                **{f"{v}_same_tokens": bool((res[v][0] == new).all()) for v in VARIANTS[1:]},
                **{f"{v}_max_abs_diff": float((res[v][2] - ref)[mask].abs().max()) for v in VARIANTS[1:]},
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a model directory (e.g. one egt built under artifacts/models)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--head-scale", type=float, default=1.0, help="multiply the output head (--check)")
    ap.add_argument("--temperature", type=float, default=0.0, help="> 0: --check a sampled generation")
    ap.add_argument("--out")
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        return _child(a.child, a)
    if a.check:
        return _check(a)
    runs = []
    for r in range(a.repeats):
        k = r % len(a.variants)
        for v in a.variants[k:] + a.variants[:k]:
            cmd = [
                sys.executable,
                __file__,
                "--model",
                a.model,
                "--batch",
                str(a.batch),
                "--new-tokens",
                str(a.new_tokens),
                "--chunk",
                str(a.chunk),
                "--child",
                v,
            ]
            load = os.getloadavg()[0]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs.append({**json.loads(out), "repeat": r, "load1": load})
    x = runs[0]
    print(f"model={a.model} B={x['B']} G={x['G']} V={x['V']} repeats={a.repeats}")
    print(
        f"{'variant':>14} {'wall s min/med/max':>20} {'cpu s':>6} {'extra MB':>8} {'load':>9} {'time/hf':>7} "
        f"{'mem/hf':>6}"
    )
    med = {}
    for v in a.variants:
        rs = [x for x in runs if x["variant"] == v]
        med[v] = {k: statistics.median(x[k] for x in rs) for k in ("seconds", "cpu_seconds", "extra_mb")}
        med[v]["wall"] = [f(x["seconds"] for x in rs) for f in (min, statistics.median, max)]
        med[v]["load"] = [f(x["load1"] for x in rs) for f in (min, max)]
    for v in a.variants:
        m, h = med[v], med.get("hf_logits")
        ratios = f"{m['seconds'] / h['seconds']:>7.2f} {m['extra_mb'] / max(h['extra_mb'], 1):>6.2f}" if h else ""
        print(
            f"{v:>14} {m['wall'][0]:>6.2f}/{m['wall'][1]:>5.2f}/{m['wall'][2]:>6.2f} {m['cpu_seconds']:>6.2f} "
            f"{m['extra_mb']:>8.0f} {m['load'][0]:>4.1f}–{m['load'][1]:<4.1f} {ratios}"
        )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(
                {"version": 1, "config": {k: v for k, v in vars(a).items() if k not in ("child", "out")}, "runs": runs},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
