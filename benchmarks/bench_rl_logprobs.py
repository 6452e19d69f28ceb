"""Peak extra memory and time of the RL log-prob passes, before vs after chunking (outside the tests).

    python benchmarks/bench_rl_logprobs.py                                  # CPU: hidden 64, V = 151,936
    python benchmarks/bench_rl_logprobs.py --device cuda --shape 7b --batch 16 --new 1024

Compares, on the same model and the same rollout (``--batch`` sequences of a prompt with one image
and ``--new`` completion tokens):
  before  the unchunked path egt used until 2026-11: ``completion_logits`` ([b, L, V] logits) then
          ``token_logprobs`` / ``token_entropy`` on the whole tensor (fp32 copies of [b, L, V])
  after   ``egt.rl.rollout.logprobs_and_entropy``: last hidden states, then the output head
          ``--chunk`` positions at a time (checkpointed under gradients), micro-batches of
          ``--micro`` sequences in the no-grad pass
  shared  the same with ``shared_prompt=True`` (``rl.shared_prompt_pass``): the rollout is ``--batch`` /
          ``--group`` prompts with ``--group`` completions each, and each prompt runs once per group
          (egt.rl.rollout.shared_prompt_hidden). Under the activation checkpointing this script turns
          on, the grad pass declines it and runs every row whole (``--no-checkpointing`` to measure it)
  packed  ``shared_prompt="packed"`` (``rl.shared_prompt_pass=packed``): the same groups, one row
          ``[prompt | completion_1 | … | completion_G]`` per group under a 4D mask
          (egt.rl.rollout.packed_prompt_hidden), which runs under checkpointing too
  packing ``packed`` with ``packing=True`` (``rl.packing=true``, egt.rl.packing): each group at its real
          length (no padding after a completion's stop token, none before the prompt), one group per row,
          or several up to ``--pack-tokens`` per row
  seqpack ``shared_prompt=False`` with ``packing=True``: whole ``[prompt | completion]`` sequences at their
          real length, packed into rows of up to ``--pack-tokens`` (one per row without it)
  packed_varlen, packing_varlen
          ``packed`` / ``packing`` with the language model under ``egt_varlen``: no 4D mask, the groups go to
          the attention as prefix-grouped varlen sequences (egt.models.attention.prefix_groups: each prompt
          over itself, each completion over its prompt and its own past). The kernel is torch's varlen_attn /
          flash-attn 2 on CUDA, the ``reference`` one (one sdpa call per sequence) on CPU: a CPU time of these
          measures the layout, not the kernel ("kernel" in the JSON)
for two passes:
  old     no-grad log π_old + token entropy (the rollout's scoring pass)
  grad    log π_θ with gradients, then backward (the policy update)
Each (variant, pass) runs in a fresh process. Peak extra memory: on CPU the rise of the process's max
RSS over what the model and the inputs already hold; on CUDA max_memory_allocated over the memory
allocated before the pass. Prints one JSON line per run, then a side-by-side table: time and memory
over ``before``, time over ``after`` (every row whole: the full pass), over ``shared`` (the cache
path) and over ``packed``, and the language-model positions the pass computed (``rl/logprob_positions``;
real tokens in the JSON). ``--checkpointing both`` runs every variant with and without activation
checkpointing, one table.

    python benchmarks/bench_rl_logprobs.py --batch 8 --group 4 --prompt 96 --new 32 --variants after shared packed \
        --checkpointing both        # the packed path against the full pass and the cache path, CPU
    python benchmarks/bench_rl_logprobs.py --batch 8 --group 4 --prompt 96 --new 64 --variants after packed packing \
        seqpack --pack-tokens 1024  # rl.packing against the full pass and the packed path, CPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {  # CPU shapes; v152k: the output head dominates; w256: the transformer has a share (prompt savings show)
    "v152k": dict(hidden=64, layers=2, heads=4, kv=2, inter=128, vocab=151936, tie=False),
    "w256": dict(hidden=256, layers=6, heads=4, kv=2, inter=768, vocab=151936, tie=False),
}


def _model(shape: str, dtype, device: str, checkpointing: bool = True):
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_gpu_scale as g

    if shape in SHAPES:
        g.SHAPES[shape], g.VISION[shape] = SHAPES[shape], g.VISION["tiny"]
    model = g.build(shape, "sdpa", dtype, device)
    if checkpointing:
        from egt.models.resolve import enable_checkpointing

        enable_checkpointing(model)
        model.config.use_cache = False
    return model, g


def _rollout(g, a, device):
    import torch

    px = a.image // 28 * 2  # patches per side
    n_img = px * px // 4
    torch.manual_seed(0)
    feats = []
    for _ in range(a.batch // a.group):  # each prompt's features object repeated --group times, as rollout() does
        text = torch.randint(1000, 100000, (a.prompt - n_img - 2,))
        ids = torch.cat([torch.tensor([g.START]), torch.full((n_img,), g.IMAGE), torch.tensor([g.END]), text])
        mm = torch.zeros_like(ids)
        mm[1 : 1 + n_img] = 1  # the processor's mm_token_type_ids: 1 on image tokens
        feats += [
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "mm_token_type_ids": mm,
                "pixel_values": torch.randn(px * px, 3 * 2 * 14 * 14),
                "image_grid_thw": torch.tensor([[1, px, px]]),
            }
        ] * a.group
    ids = torch.randint(1000, 100000, (a.batch, a.new))
    lengths = torch.randint(a.new // 2, a.new + 1, (a.batch,))  # completions end at different lengths
    mask = (torch.arange(a.new)[None] < lengths[:, None]).long()
    return feats, ids, mask


def _child(a) -> None:
    import torch

    from egt.rl.functional import token_entropy, token_logprobs
    from egt.rl.packing import PassTokens
    from egt.rl.rollout import completion_logits, logprobs_and_entropy, sequence_inputs

    cuda = a.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)  # the same weights in every process
    model, g = _model(a.shape, dtype, a.device, checkpointing=a.ckpt == "on")
    kernel = None
    if a.variant.endswith("_varlen"):  # the language model's attention only; the vision tower stays on sdpa
        from egt.models import attention

        kernel = attention.varlen_backend(a.device, "bfloat16" if cuda else "float32")[0] or "reference"
        attention.register(kernel)
        model.model.language_model.config._attn_implementation = "egt_varlen"
    variant = a.variant.removesuffix("_varlen")
    feats, ids, mask = _rollout(g, a, a.device)
    pad = 151643
    w = torch.randn(mask.shape, device=a.device) * mask.to(a.device)
    counts = PassTokens()

    def run():
        if variant == "before":
            with torch.set_grad_enabled(a.pass_ == "grad"):
                logits = completion_logits(model, sequence_inputs(feats, ids, mask, pad), a.new)  # [b, L, V]
                lp = token_logprobs(logits, ids.to(logits.device), 1.0)
                ent = token_entropy(logits, 1.0) if a.pass_ == "old" else None
        else:
            with torch.set_grad_enabled(a.pass_ == "grad"):
                lp, ent = logprobs_and_entropy(
                    model,
                    feats,
                    ids,
                    mask,
                    pad,
                    1.0,
                    with_entropy=a.pass_ == "old",
                    chunk_size=a.chunk,
                    batch_size=a.micro if a.pass_ == "old" else None,
                    shared_prompt={"shared": "cache", "packed": "packed", "packing": "packed"}.get(variant, False),
                    packing=variant in ("packing", "seqpack"),
                    packing_max_tokens=a.pack_tokens,
                    counts=counts,
                )
        if a.pass_ == "grad":
            (lp * w).sum().backward()
            model.zero_grad(set_to_none=True)
        m = mask.to(lp.device)
        return float((lp.detach() * m).sum()) + (float((ent * m).sum()) if ent is not None else 0.0)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        checksum = run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "variant": a.variant,
                "pass": a.pass_,
                "checkpointing": a.ckpt,
                "shape": a.shape,
                "device": a.device,
                "batch": a.batch,
                "group": a.group,
                "new": a.new,
                "prompt": a.prompt,
                "vocab": model.config.text_config.vocab_size,
                "chunk": a.chunk,
                "micro": a.micro,
                "pack_tokens": a.pack_tokens,
                "kernel": kernel,  # egt_varlen's kernel in *_varlen (reference: CPU, one sdpa per sequence)
                "lm_tokens": counts.tokens // a.repeats,  # real language-model positions of one pass
                "lm_positions": counts.positions // a.repeats,  # computed (padding included)
                "seconds_min": round(min(times), 4),
                "seconds_all": [round(t, 4) for t in times],
                "extra_gb": round((peak - base) / 2**30, 3),
                "checksum": checksum,
            }
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="v152k", help="v152k (hidden 64, V = 151,936) | w256 (6 layers of 256) | 3b | 7b")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--new", type=int, default=256, help="completion tokens L")
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens, image tokens included")
    p.add_argument("--image", type=int, default=112, help="image side in px (112 → 16 image tokens)")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--micro", type=int, default=None, help="no-grad micro-batch (sequences); default: none")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--passes", nargs="+", default=["old", "grad"])
    p.add_argument("--group", type=int, default=1, help="completions per prompt G (--batch must divide by it)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["before", "after", "shared"],
        choices=["before", "after", "shared", "packed", "packing", "seqpack", "packed_varlen", "packing_varlen"],
    )
    p.add_argument("--pack-tokens", type=int, default=None, help="packing/seqpack: tokens per row (default: one unit)")
    p.add_argument("--no-checkpointing", action="store_true", help="= --checkpointing off")
    p.add_argument("--checkpointing", choices=["on", "off", "both"], default="on", help="activation checkpointing")
    p.add_argument("--child", nargs=3, metavar=("VARIANT", "PASS", "CKPT"))
    a = p.parse_args()
    if a.batch % a.group:
        p.error(f"--batch {a.batch} is not a multiple of --group {a.group}")
    if a.child:
        a.variant, a.pass_, a.ckpt = a.child
        return _child(a)
    ckpts = ["off"] if a.no_checkpointing else ["on", "off"] if a.checkpointing == "both" else [a.checkpointing]
    rows = []
    argv = [a for a in sys.argv[1:]]
    for ckpt in ckpts:
        for pass_ in a.passes:
            for variant in a.variants:
                proc = subprocess.run(
                    [sys.executable, __file__, *argv, "--child", variant, pass_, ckpt], capture_output=True, text=True
                )
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode or not lines:
                    err = {"variant": variant, "pass": pass_, "checkpointing": ckpt, "error": proc.stderr[-600:]}
                    print(json.dumps(err))
                    continue
                print(lines[-1], flush=True)
                rows.append(json.loads(lines[-1]))
    print(
        "\n| checkpointing | pass | variant | s | extra GB | time / before | memory / before "
        "| time / after (full pass) | memory / after | time / shared (cache path) | time / packed | LM positions |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ckpt in ckpts:
        for pass_ in a.passes:
            got = {r["variant"]: r for r in rows if r["pass"] == pass_ and r["checkpointing"] == ckpt}
            for variant, r in got.items():
                cells = [ckpt, pass_, variant, f"{r['seconds_min']:.3f}", f"{r['extra_gb']:.2f}"]
                for ref in ("before", "after"):
                    b = got.get(ref)
                    cells += (
                        [
                            f"{r['seconds_min'] / b['seconds_min']:.2f}",
                            f"{r['extra_gb'] / max(b['extra_gb'], 1e-9):.3f}",
                        ]
                        if b
                        else ["–", "–"]
                    )
                for ref in ("shared", "packed"):
                    c = got.get(ref)
                    cells.append(f"{r['seconds_min'] / c['seconds_min']:.2f}" if c else "–")
                cells.append(f"{r['lm_positions']:,}" if r.get("lm_positions") else "–")
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
