"""Throughput of the real Qwen2.5-VL shapes (random weights): SFT tokens/s + MFU, probe samples/s,
RL seconds per step. One process, one device; nothing is downloaded (the model is built from a config).

    python benchmarks/bench_gpu_scale.py --shape 3b                 # a GPU: bf16, sdpa / flash-attn
    python benchmarks/bench_gpu_scale.py --shape 7b --optim sgd     # 7B + AdamW states exceed 80 GB on one GPU
    python benchmarks/bench_gpu_scale.py --shape tiny --device cpu  # checks the script itself on a CPU

Work per measurement (the same as egt's stages, on synthetic inputs: one image of --image px and a
text prompt, --prompt tokens in all):
  sft    fwd + bwd + optimizer step on --batch sequences of prompt + --target tokens (gradient
         checkpointing on; loss on the target tokens, egt's chunked NLL or --sft-loss hf); --sft-mix: target
         lengths from 1/4 to all of --target; --packing: the batch as one padding-free packed row
         (egt.sft.packing, attention blocked per sample); tokens/s counts every real token (no padding);
         MFU = 6 · N · tokens/s / peak (N = parameters, attention FLOPs left out, so MFU is a slight
         underestimate)
  probe  greedy generate --new tokens for --batch prompts, one teacher-forced pass, exact full-vocabulary
         entropy in chunks (egt.probe.probe.teacher_forced_entropy); samples/s
  rl     rollout (sample --new tokens for --batch sequences), a no-grad log-prob pass (π_old) and one
         fwd + bwd + step on the completions, log-probs through egt's chunked output head
         (egt.rl.functional.chunked_token_logprobs, --chunk positions); seconds per step
Prints one JSON line per measurement.

  --profile (with sft): one more SFT step timed by phase (CUDA events on a GPU): the vision tower's forward,
         the language model's forward, the loss (output head + NLL), backward (recomputation under
         checkpointing included), the optimizer step; then torch.profiler's top kernels by device time.
  --optim adamw_fused: torch's fused AdamW (one kernel for every parameter; CUDA only) against adamw (the
         multi-tensor foreach kernels torch picks by default on CUDA).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SHAPES = {  # Qwen2.5-VL-{3B,7B}-Instruct config.json; tiny = the CPU smoke shape
    "7b": dict(hidden=3584, layers=28, heads=28, kv=4, inter=18944, vocab=152064, tie=False),
    "3b": dict(hidden=2048, layers=36, heads=16, kv=2, inter=11008, vocab=151936, tie=True),
    "tiny": dict(hidden=64, layers=2, heads=4, kv=2, inter=128, vocab=1000, tie=True),
}
VISION = {
    "7b": dict(depth=32, hidden=1280, heads=16, inter=3420),
    "3b": dict(depth=32, hidden=1280, heads=16, inter=3420),
    "tiny": dict(depth=2, hidden=64, heads=4, inter=128),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16
IMAGE, START, END = 151655, 151652, 151653  # Qwen's <|image_pad|>, <|vision_start|>, <|vision_end|>


def build(shape: str, attn: str, dtype: torch.dtype, device: str) -> torch.nn.Module:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    t, v = SHAPES[shape], VISION[shape]
    vocab = max(t["vocab"], IMAGE + 10)
    head_dim = t["hidden"] // t["heads"]
    sec = [head_dim // 8, (head_dim // 2 - head_dim // 8) // 2]
    text = dict(
        vocab_size=vocab,
        hidden_size=t["hidden"],
        intermediate_size=t["inter"],
        num_hidden_layers=t["layers"],
        num_attention_heads=t["heads"],
        num_key_value_heads=t["kv"],
        max_position_embeddings=32768,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": [sec[0], sec[1], head_dim // 2 - sec[0] - sec[1]],
        },
        eos_token_id=151645,
        pad_token_id=151643,
        bos_token_id=151643,
    )
    vision = dict(
        depth=v["depth"],
        hidden_size=v["hidden"],
        num_heads=v["heads"],
        intermediate_size=v["inter"],
        out_hidden_size=t["hidden"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[v["depth"] - 1],
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=t["tie"],
        image_token_id=IMAGE,
        vision_start_token_id=START,
        vision_end_token_id=END,
        video_token_id=151656,
    )
    cfg._attn_implementation = attn
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 151643, 151645
    return model


def inputs(batch: int, prompt: int, image_px: int, device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One image per sequence (image_px² → (px/14)² patches, a quarter of that as tokens) + text."""
    g = image_px // 28 * 2  # patches per side, even
    n_img = g * g // 4
    if prompt < n_img + 8:
        raise ValueError(f"--prompt {prompt} is shorter than the {n_img} image tokens of a {image_px} px image")
    text = torch.randint(1000, 100000, (batch, prompt - n_img - 2), device=device)
    ids = torch.cat(
        [
            torch.full((batch, 1), START, device=device),
            torch.full((batch, n_img), IMAGE, device=device),
            torch.full((batch, 1), END, device=device),
            text,
        ],
        1,
    )
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(batch * g * g, 3 * 2 * 14 * 14, device=device, dtype=dtype),
        "image_grid_thw": torch.tensor([[1, g, g]] * batch, device=device),
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


class Clock:
    """Seconds between marks: CUDA events on a GPU (read after one synchronize), perf_counter on a CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.marks: list[tuple[str, object]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.marks.append((name, e))
        else:
            self.marks.append((name, time.perf_counter()))

    def seconds(self, start: str, end: str) -> float:
        sync("cuda" if self.cuda else "cpu")
        a, b = dict(self.marks)[start], dict(self.marks)[end]
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a


def profile_sft(model, step, device: str) -> dict:
    """One SFT step split by phase (module forward hooks on the vision tower and the language model mark
    their forward; the rest of the forward is the loss), then torch.profiler's top kernels."""
    clock = Clock(device)
    inner = getattr(model, "model", model)
    hooks = []
    for name in ("visual", "language_model"):
        mod = getattr(inner, name, None)
        if mod is not None:
            hooks.append(mod.register_forward_pre_hook(lambda m, args, n=name: clock.mark(f"{n}_start")))
            hooks.append(mod.register_forward_hook(lambda m, args, out, n=name: clock.mark(f"{n}_end")))
    try:
        step(clock)
    finally:
        for h in hooks:
            h.remove()
    first = {}
    for name, _ in clock.marks:  # a checkpointed backward reruns the forwards: keep the first pass
        first.setdefault(name, _)
    clock.marks = list(first.items())
    out = {
        "vision_fwd_s": clock.seconds("visual_start", "visual_end") if "visual_start" in first else None,
        "language_fwd_s": clock.seconds("language_model_start", "language_model_end"),
        "loss_s": clock.seconds("language_model_end", "loss_end"),
        "forward_s": clock.seconds("start", "loss_end"),
        "backward_s": clock.seconds("loss_end", "backward_end"),
        "optimizer_s": clock.seconds("backward_end", "optimizer_end"),
    }
    out = {k: None if v is None else round(v, 4) for k, v in out.items()}
    acts = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.startswith("cuda") else []
    )
    with torch.profiler.profile(activities=acts) as prof:
        step(Clock(device))
    sync(device)
    key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=20), flush=True)
    return out


def sft_batch(a, device, dtype) -> tuple[dict[str, torch.Tensor], int, int]:
    """The SFT micro-batch (padded, or packed with ``--packing``), its real tokens and the positions it runs.
    ``--sft-mix``: sample i's target is ``target · (1/4 + 3/4 · i/(b−1))`` tokens (a mix of lengths, where
    padding costs and packing saves), else every sample has ``target``."""
    from egt.data.encode import collate
    from egt.sft.packing import pack_collate, token_counts

    full = inputs(a.batch, a.prompt + a.target, a.image, "cpu", dtype)
    per_image = full["pixel_values"].shape[0] // a.batch
    samples = []
    for i in range(a.batch):
        frac = 0.25 + 0.75 * i / max(1, a.batch - 1) if a.sft_mix else 1.0
        n = a.prompt + max(1, round(a.target * frac))
        ids = full["input_ids"][i, :n]
        labels = ids.clone()
        labels[: a.prompt] = -100  # the target tokens only, as egt's SFT
        samples.append(
            {
                "input_ids": ids,
                "mm_token_type_ids": (ids == IMAGE).int(),
                "pixel_values": full["pixel_values"][i * per_image : (i + 1) * per_image],
                "image_grid_thw": full["image_grid_thw"][i : i + 1],
                "labels": labels,
            }
        )
    budget = a.packing_max_tokens or None
    batch = pack_collate(samples, 0, budget) if a.packing else collate(samples, 0, "right")
    real, slots = token_counts(batch)
    return {k: v.to(device) for k, v in batch.items()}, real, slots


def sft_fused_ce(a) -> bool:
    """Whether egt.sft.loss.sft_nll takes Liger's fused linear cross-entropy in this run."""
    from egt.models import liger

    return bool(a.liger and a.sft_loss == "egt" and liger.fused_linear_cross_entropy(reduction="none") is not None)


def bench_sft(model, opt, a, device, dtype) -> dict:
    from egt.sft.loss import sft_nll

    batch, real, slots = sft_batch(a, device, dtype)
    if a.packing and a.sft_loss == "hf":
        raise SystemExit("--packing runs egt's loss (--sft-loss egt): the model's own loss has no packed labels")

    def step(clock=None):
        mark = clock.mark if clock is not None else (lambda name: None)
        mark("start")
        if a.sft_loss == "hf":  # transformers' causal-LM loss: [b, T, V] logits, upcast to fp32
            loss = model(**batch).loss
        else:  # egt's: hidden states through the head in checkpointed chunks
            nll, mask = sft_nll(model, batch, a.chunk, liger=a.liger)  # --liger: Liger's fused loss
            loss = (nll * mask).sum() / mask.sum()
        mark("loss_end")
        loss.backward()
        mark("backward_end")
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark("optimizer_end")

    s = timed(step, device, a.steps)
    tokens = real  # real tokens (every token of every sample; padding not counted)
    n = sum(p.numel() for p in model.parameters())
    out = {
        "sft_tokens_per_s": round(tokens / s, 1),
        "sft_s_per_step": round(s, 4),
        "parameters": n,
        "sft_loss": a.sft_loss,
        "sft_fused_ce": sft_fused_ce(a),  # Liger's fused linear cross-entropy ran (--liger, egt's loss, CUDA)
        "sft_packing": a.packing,
        "sft_packing_max_tokens": a.packing_max_tokens if a.packing else None,
        "sft_mix": a.sft_mix,
        "sft_tokens": real,
        "sft_padded_tokens": slots,
    }
    if a.peak_tflops:
        out["sft_mfu"] = round(6 * n * tokens / s / (a.peak_tflops * 1e12), 4)
    if a.profile:
        out["sft_profile"] = profile_sft(model, step, device)
    return out


@torch.no_grad()
def bench_probe(model, a, device, dtype) -> dict:
    from egt.probe.probe import generated_mask, teacher_forced_entropy

    batch = inputs(a.batch, a.prompt, a.image, device, dtype)

    def probe():
        seq = model.generate(**batch, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False)
        new = seq[:, batch["input_ids"].shape[1] :]
        teacher_forced_entropy(model, batch, new, generated_mask(new, {151645}), a.chunk)

    model.eval()
    s = timed(probe, device, a.steps)
    model.train()
    return {"probe_samples_per_s": round(a.batch / s, 2), "probe_s_per_batch": round(s, 3)}


def bench_rl(model, opt, a, device, dtype) -> dict:
    from egt.probe.probe import last_hidden_and_head
    from egt.rl.functional import chunked_token_logprobs

    batch = inputs(a.batch, a.prompt, a.image, device, dtype)  # batch/group prompts × group completions
    T = batch["input_ids"].shape[1]

    def logprobs(full, seq):  # egt's RL path: hidden states through the head in chunks, never [b, L, V]
        hidden, head = last_hidden_and_head(model, full)
        return chunked_token_logprobs(hidden[:, T - 1 : -1], head, seq[:, T:], chunk=a.chunk)[0]

    def step():
        model.eval()
        with torch.no_grad():
            seq = model.generate(
                **batch, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=True, top_k=0, top_p=1.0
            )
            full = {**batch, "input_ids": seq, "attention_mask": torch.ones_like(seq)}
            old = logprobs(full, seq)
        model.train()
        logp = logprobs(full, seq)
        loss = -(torch.exp(logp - old) * torch.randn_like(old)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    s = timed(step, device, max(1, a.steps // 2))
    return {"rl_s_per_step": round(s, 3), "rl_sequences_per_step": a.batch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="3b")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--attn", default="auto", help="auto | sdpa | flash_attention_2 | eager | egt_varlen")
    p.add_argument(
        "--liger",
        action="store_true",
        help="Liger's RMSNorm + SwiGLU kernels (egt.models.liger) and, with --sft-loss egt, its fused linear "
        "cross-entropy in the SFT loss (egt.sft.loss)",
    )
    p.add_argument("--optim", choices=["adamw", "adamw_fused", "sgd"], default="adamw")
    p.add_argument("--profile", action="store_true", help="sft: one more step split by phase + top kernels")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=512, help="prompt tokens, image tokens included")
    p.add_argument("--target", type=int, default=512, help="SFT target tokens")
    p.add_argument("--new", type=int, default=256, help="generated tokens (probe, RL)")
    p.add_argument("--image", type=int, default=448, help="image side in px (448 → 256 image tokens)")
    p.add_argument("--chunk", type=int, default=128, help="output-head positions per chunk (egt's losses, probe)")
    p.add_argument(
        "--sft-loss",
        choices=["egt", "hf"],
        default="egt",
        help="egt: chunked NLL (egt.sft.loss); hf: the model's own loss over full logits",
    )
    p.add_argument("--packing", action="store_true", help="SFT: padding-free packed rows (egt.sft.packing)")
    p.add_argument("--packing-max-tokens", type=int, help="packed row width (default: one row, sft.packing_max_tokens)")
    p.add_argument("--sft-mix", action="store_true", help="SFT: targets from 1/4 to all of --target (a length mix)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak (default: from the GPU name)")
    p.add_argument("--only", nargs="*", default=["sft", "probe", "rl"])
    a = p.parse_args()
    cuda = a.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32  # bf16 is ~28x slower on CPUs without it
    if a.attn == "auto":
        from egt.models.resolve import resolve_attn

        a.attn = resolve_attn("auto")
    elif a.attn == "egt_varlen":  # registers the kernel, or says why sdpa runs instead
        from egt.models.resolve import resolve_attn

        a.attn = resolve_attn("egt_varlen", "bfloat16" if cuda else "float32")
    if a.peak_tflops is None and cuda:
        name = torch.cuda.get_device_name()
        a.peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    torch.manual_seed(0)
    model = build(a.shape, a.attn, dtype, a.device)
    if a.attn == "egt_varlen":  # the vision tower's windows in one varlen call, as egt.models.loader does
        from egt.models.attention import patch_vision_tower

        patch_vision_tower(model)
    if a.liger:
        from egt.models import liger

        liger.apply(model, a.device)
    from egt.models.resolve import enable_checkpointing

    enable_checkpointing(model)
    model.config.use_cache = False
    model.train()
    if a.optim == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    else:  # adamw: torch's default kernels (foreach on CUDA); adamw_fused: one fused kernel (CUDA)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6, **({"fused": True} if a.optim == "adamw_fused" else {}))
    head = {
        "shape": a.shape,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": str(dtype),
        "attn": a.attn,
        "liger": a.liger,
        "optim": a.optim,
        "batch": a.batch,
        "prompt": a.prompt,
        "target": a.target,
        "new": a.new,
        "image_px": a.image,
        "torch": torch.__version__,
    }
    for name, fn in (
        ("sft", lambda: bench_sft(model, opt, a, a.device, dtype)),
        ("probe", lambda: bench_probe(model, a, a.device, dtype)),
        ("rl", lambda: bench_rl(model, opt, a, a.device, dtype)),
    ):
        if name in a.only:
            out = fn()
            if cuda:
                out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            print(json.dumps({**head, "bench": name, **out}), flush=True)


if __name__ == "__main__":
    main()
