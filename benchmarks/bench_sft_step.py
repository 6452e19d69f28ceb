"""Seconds per SFT step and tokens per second, egt vs TRL's SFTTrainer side by side (outside the tests).

    python benchmarks/bench_sft_step.py --trl-site /tmp/trl_site                 # 3 alternating repeats
    python benchmarks/bench_sft_step.py --repeats 5 --steps 50 --warmup 10 --threads 1
    python benchmarks/bench_sft_step.py --packing --no-trl         # egt padded vs egt sft.packing=true
    python benchmarks/bench_sft_step.py --packing --no-trl --packing-max-tokens 256   # rows of <= 256 tokens

``--packing``: instead of TRL, egt again with ``sft.packing=true`` (egt.sft.packing: the same batches as
padding-free rows), alternating with the padded run, the same table with "egt packed" in TRL's columns
(and the token slots each step ran, padding included: ``padded tokens per step``).

Same model, data and sizes on both sides: the demo model (``conf/model/demo.yaml``, built offline here
once, random weights) or ``--model-dir``; the synthetic world's ``sft_pool`` with the synthetic
teacher's trajectories, both made once by egt's own data and distill stages in ``--workdir``; batch
``--batch`` (8) sequences per optimizer step, lr and weight decay from ``conf/sft/default.yaml``,
constant schedule, loss on the assistant tokens only (egt's target mask; TRL's prompt-completion
data with ``completion_only_loss``), fp32 on the CPU, no gradient checkpointing (egt's demo has
none; TRL's default is on, ``--trl-gradient-checkpointing`` for it).

egt runs its real stage code (``egt.stages.sft.train`` under Lightning: the encoding cache, built
once in the workdir before the first measured process, as a second run of the same data finds it;
checkpoints, the logger and the bench check off); TRL ``SFTTrainer.train()`` (``report_to=none``, no
saves; its collator tokenizes and processes the images of every batch as it comes). Each framework
runs in a fresh process, alternating (A B, then B A) per repeat. Per process: the median step
(wall and this process's CPU seconds, from one optimizer step's end to the next, the first
``--warmup`` dropped), non-pad input tokens per second over the measured steps (every token in the
attention mask, prompt and image tokens included, as TRL's ``num_tokens`` counts them), the seconds
from process start to the end of the first step, the whole process's wall time, and peak RSS.
Prints one JSON line per process, then a table: min / median / max over processes and the median
of the paired egt/TRL ratios. Without TRL importable, egt alone, saying so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()  # the child's clock starts at import: time to first step counts the start-up
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rl_step import print_header, run_json_child, start  # noqa: E402  (the same demo model, environment and child runner)


def _cfg(a: argparse.Namespace):
    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401  (registers the typed schema)

    over = [
        "model=demo",
        "logger=none",
        f"seed={a.seed}",
        f"paths.artifacts={a.workdir}/artifacts",
        f"data.world.n_sft={a.samples}",
        f"sft.batch_size={a.batch}",
        f"sft.max_steps={a.warmup + a.steps}",
        "sft.val_fraction=0",
        "sft.eval_n=0",
        "sft.checkpoint_every_n_steps=100000",
        "sft.warmup_ratio=0",
        "stages=[data,distill,sft]",
    ]
    if getattr(a, "child", None) == "egt-packed":
        over.append("sft.packing=true")
        if a.packing_max_tokens:
            over.append(f"sft.packing_max_tokens={a.packing_max_tokens}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=over)


def _pipe(a: argparse.Namespace):
    from egt.pipeline import Pipeline

    return Pipeline(_cfg(a))


class _Clock:
    """Ends of optimizer steps (wall, CPU) and the non-pad tokens of each step's batch."""

    def __init__(self) -> None:
        self.ends: list[tuple[float, float]] = []
        self.tokens: list[int] = []
        self.slots: list[int] = []  # positions the model ran (padding included)
        self.first_step_s: float | None = None

    def mark(self, tokens: int, slots: int | None = None) -> None:
        self.ends.append((time.perf_counter(), time.process_time()))
        self.tokens.append(int(tokens))
        self.slots.append(int(tokens if slots is None else slots))
        if self.first_step_s is None:
            self.first_step_s = round(self.ends[0][0] - T_START, 2)

    def report(self, framework: str, a: argparse.Namespace, extra: dict) -> None:
        import resource

        import torch

        w = max(1, a.warmup)
        if len(self.ends) <= w:  # the untimed preparation run
            print(json.dumps({"framework": framework, "steps": len(self.ends), **extra}), flush=True)
            return
        wall = [self.ends[k][0] - self.ends[k - 1][0] for k in range(w, len(self.ends))]
        cpu = [self.ends[k][1] - self.ends[k - 1][1] for k in range(w, len(self.ends))]
        tokens = sum(self.tokens[w:])
        print(
            json.dumps(
                {
                    "framework": framework,
                    "step_s_median": round(statistics.median(wall), 4),
                    "cpu_s_median": round(statistics.median(cpu), 4),
                    "tokens_per_s": round(tokens / sum(wall), 1),
                    "tokens_per_step": round(tokens / len(wall), 1),
                    "padded_tokens_per_step": round(sum(self.slots[w:]) / len(wall), 1),
                    "steps": len(self.ends),
                    "first_step_s": self.first_step_s,
                    "threads": torch.get_num_threads(),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    **extra,
                }
            ),
            flush=True,
        )


# ---------------------------------------------------------------------------- children
def child_egt(a: argparse.Namespace) -> None:
    from egt.sft.packing import token_counts
    from egt.stages import sft as sft_stage

    clock = _Clock()
    base = sft_stage.LossHistory

    class Timed(base):  # the stage builds its loss history by this name: one optimizer step per batch here
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, idx):  # noqa: ANN001
            clock.mark(*token_counts(batch))  # real tokens and the positions run (packed rows have no mask)
            super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)

    sft_stage.LossHistory = Timed
    pipe = _pipe(a)
    data, distill = pipe.get("data"), pipe.get("distill")
    with tempfile.TemporaryDirectory(prefix="bench_sft_egt-") as out:
        joined = sft_stage.joined_trajectories(data, distill)  # train takes the joined rows (it took distill before)
        summary = sft_stage.train(pipe.cfg, Path(out), Path(a.model_dir), data, joined, pipe.store)
    clock.report(a.child or "egt", a, {"optimizer_steps": summary["steps"], "n_train": summary["n_train"]})


def child_trl(a: argparse.Namespace) -> None:
    import datasets
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from egt.data.prompt import build_user_text
    from egt.models.resolve import load_for_training
    from egt.sft.data import join_trajectories

    clock = _Clock()
    pipe = _pipe(a)
    cfg = pipe.cfg
    data, distill = pipe.get("data"), pipe.get("distill")
    pool = datasets.load_from_disk(str(Path(data["dataset_path"])))["sft_pool"]
    joined = join_trajectories(pool, datasets.load_from_disk(distill["trajectories_path"]))
    model, processor = load_for_training(Path(a.model_dir), cfg)
    # the same user turn egt builds (images first, then the text: TRL inserts the image placeholders) and
    # the same assistant target
    train = datasets.Dataset.from_dict(
        {
            "prompt": [
                [
                    {
                        "role": "user",
                        "content": build_user_text(r["query"], r["response_1"], r["response_2"], cfg.data.template),
                    }
                ]
                for r in joined
            ],
            "completion": [[{"role": "assistant", "content": r["target"]}] for r in joined],
            "images": [r["images"] for r in joined],
        }
    )
    seen = {"tokens": 0.0}

    class Timed(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "num_tokens" in logs:  # cumulative non-pad input tokens
                clock.mark(float(logs["num_tokens"]) - seen["tokens"])
                seen["tokens"] = float(logs["num_tokens"])

    s = cfg.sft
    with tempfile.TemporaryDirectory(prefix="bench_sft_trl-") as out:
        args = SFTConfig(
            output_dir=out,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            use_cpu=True,
            bf16=False,
            seed=a.seed,
            max_steps=a.warmup + a.steps,
            per_device_train_batch_size=a.batch,
            gradient_accumulation_steps=1,
            learning_rate=float(s.lr),
            weight_decay=float(s.weight_decay),
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_length=int(s.max_length),
            packing=False,
            completion_only_loss=True,
            dataloader_num_workers=0,
            disable_tqdm=True,
            gradient_checkpointing=a.trl_gradient_checkpointing,
        )
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=train, processing_class=processor, callbacks=[Timed()]
        )
        trainer.train()
    import trl

    clock.report(
        "trl", a, {"trl": trl.__version__, "optimizer_steps": trainer.state.global_step, "n_train": len(train)}
    )


# ---------------------------------------------------------------------------- parent
def run_child(a: argparse.Namespace, framework: str, env: dict[str, str]) -> dict:
    argv = (
        [
            sys.executable,
            __file__,
            "--child",
            framework,
            "--model-dir",
            str(a.model_dir),
            "--workdir",
            a.workdir,
            "--steps",
            str(a.steps),
            "--warmup",
            str(a.warmup),
            "--batch",
            str(a.batch),
            "--seed",
            str(a.seed),
            "--samples",
            str(a.samples),
        ]
        + (["--threads", str(a.threads)] if a.threads else [])
        + (["--trl-gradient-checkpointing"] if a.trl_gradient_checkpointing else [])
        + (["--packing-max-tokens", str(a.packing_max_tokens)] if a.packing_max_tokens else [])
    )
    return run_json_child(argv, env, framework)


def table(rows: list[dict], trl: str | None, second: str = "trl") -> str:
    def stats(xs: list[float], fmt: str = "{:.3f}") -> str:
        return " / ".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs))) if xs else "–"

    e = [r for r in rows if r["framework"] == "egt"]
    t = [r for r in rows if r["framework"] == second]
    other = "egt packed" if second == "egt-packed" else f"TRL {trl}"
    head = "| metric | egt: min / median / max |" + (
        f" {other}: min / median / max | egt / {other.split()[0] if second == 'trl' else 'packed'} (paired) |"
        if trl
        else ""
    )
    lines = [head, "|---|---|" + ("---|---|" if trl else "")]
    for name, key, fmt in (
        ("s/step (wall)", "step_s_median", "{:.3f}"),
        ("s/step (CPU)", "cpu_s_median", "{:.3f}"),
        ("non-pad tokens/s", "tokens_per_s", "{:,.0f}"),
        ("tokens per step", "tokens_per_step", "{:,.0f}"),
        ("padded tokens per step (positions run)", "padded_tokens_per_step", "{:,.0f}"),
        ("s to the end of step 1 (process start)", "first_step_s", "{:.1f}"),
        ("process wall s", "process_s", "{:.1f}"),
        ("peak RSS MB", "peak_rss_mb", "{:,.0f}"),
    ):
        cells = [name, stats([r[key] for r in e], fmt)]
        if trl:
            ratios = [x[key] / y[key] for x, y in zip(e, t)]
            cells += [
                stats([r[key] for r in t], fmt),
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    loads = [r["load_1min"] for r in rows]
    lines.append(f"\nload (1 min) {min(loads):.1f}–{max(loads):.1f}; {len(e)} processes per framework")
    return "\n".join(lines)


p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--repeats", type=int, default=3, help="processes per framework")
p.add_argument("--steps", type=int, default=30, help="measured optimizer steps per process")
p.add_argument("--warmup", type=int, default=5, help="optimizer steps dropped at the start of each process")
p.add_argument("--batch", type=int, default=8, help="sequences per optimizer step (egt sft.batch_size)")
p.add_argument("--samples", type=int, default=1000, help="SFT pool size (data.world.n_sft)")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, help="torch threads in both children (default: torch's own)")
p.add_argument("--model-dir", help="an HF model directory (default: the demo model, built in --workdir)")
p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bench_sft_step"))
p.add_argument("--trl-site", help="a folder holding trl (and accelerate), put on the TRL child's PYTHONPATH")
p.add_argument("--trl-gradient-checkpointing", action="store_true", help="TRL's own default (egt's demo: off)")
p.add_argument("--no-trl", action="store_true", help="egt only")
p.add_argument("--packing", action="store_true", help="egt padded vs egt sft.packing=true (instead of TRL)")
p.add_argument("--packing-max-tokens", type=int, help="the packed run's sft.packing_max_tokens (default: null)")
p.add_argument("--child", choices=["egt", "trl", "egt-packed"], help=argparse.SUPPRESS)


def main() -> None:
    a = p.parse_args()
    started = start(a, {"egt": child_egt, "trl": child_trl, "egt-packed": child_egt})
    if started is None:  # this was a child process
        return
    env_egt, env_trl, trl = started
    # data, trajectories and egt's encoding cache, once and untimed (a second run of the same data finds them)
    a_prep = argparse.Namespace(**{**vars(a), "steps": 1, "warmup": 0})
    run_child(a_prep, "egt", env_egt)
    second = "egt-packed" if a.packing else "trl"
    if a.packing:
        trl = "packed"  # the table's second column: egt with sft.packing=true
    print_header(a, f"batch {a.batch}", "per framework", trl)
    rows = []
    for rep in range(a.repeats):
        order = ["egt", second] if trl else ["egt"]
        for fw in order if rep % 2 == 0 else order[::-1]:
            row = run_child(a, fw, env_trl if fw == "trl" else env_egt)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(table(rows, trl, second))


if __name__ == "__main__":
    main()
