"""Seconds per RL step (one rollout batch), egt vs TRL's GRPOTrainer side by side (outside the tests).

    python benchmarks/bench_rl_step.py                                  # both settings, 3 alternating repeats
    PYTHONPATH=/tmp/trl_site python benchmarks/bench_rl_step.py          # or: --trl-site /tmp/trl_site
    python benchmarks/bench_rl_step.py --settings on_policy --repeats 5 --steps 6
    python benchmarks/bench_rl_step.py --baseline-overrides rl.shared_prompt_pass=false   # + egt without a change

Same model, data and sizes on both sides: the demo model (``conf/model/demo.yaml``, 4 M parameters,
built offline here once, random weights) or ``--model-dir``; the synthetic world's RL prompts (one
112 px image each, the ``minimal`` template), in order; GRPO with G = 4 completions of 8 prompts,
``--new`` (48) new tokens sampled at temperature 1 from the full distribution, group-normalised
advantages, PPO clip ε = 0.2, k3 KL to the frozen starting model with β = ``--kl`` (egt's default
1e-3; 0 drops the reference pass on both sides), lr 1e-5 constant, grad-norm clip 1, egt's reward
(``conf/reward/default.yaml``: the rule judge) as TRL's reward function, fp32 on the CPU.

Settings (per rollout of 32 completions):
  on_policy  one optimizer step on the whole rollout: egt ``rl.num_mini_batches=1`` (no π_old pass,
             ``skip_old_pass_on_policy``); TRL ``per_device_train_batch_size=32, steps_per_generation=1``
  default    egt's own default ``rl.num_mini_batches`` from ``conf/rl/grpo.yaml`` (2: two optimizer
             steps of 16, so a no-grad π_old pass); TRL the same split, ``per_device_train_batch_size=16,
             steps_per_generation=2`` (TRL then computes π_old too)

egt runs its real stage code (``egt.stages.rl.train`` under Lightning, ``rl=grpo``, checkpoints and
the logger off, ``rl.eval_n=0``); TRL its ``GRPOTrainer.train()`` (``report_to=none``, no saves).
Each (framework, setting) runs in a fresh process, the frameworks alternating (A B, then B A) per
repeat. A step's seconds are the wall time from the end of one rollout batch to the end of the next,
as each framework's own callback sees it (generation, reward, log-prob passes, backward, optimizer
step(s) and the framework's per-step bookkeeping); the first ``--warmup`` steps of a process are
dropped. The machine's 1-minute load average is read before every process. Prints one JSON line per
process, then a table: per setting, min / median / max over processes of each process's median step,
and the median of the paired egt/TRL ratios. Without TRL importable, egt alone, saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PROMPTS, GROUP = 8, 4


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# ---------------------------------------------------------------------------- shared by both children
def _cfg(a: argparse.Namespace, setting: str, extra: list[str] | None = None):
    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401  (registers the typed schema conf/config.yaml starts from)

    over = [
        "rl=grpo",
        "model=demo",
        "logger=none",
        f"seed={a.seed}",
        f"rl.group_size={GROUP}",
        f"rl.batch_size={PROMPTS}",
        f"rl.max_new_tokens={a.new}",
        f"rl.max_steps={a.warmup + a.steps}",
        f"rl.kl_coef={a.kl}",
        "rl.checkpoint_every_n_steps=0",
        "rl.eval_n=0",
        "rl.log_examples=0",
    ]
    if setting == "on_policy":
        over.append("rl.num_mini_batches=1")
    over += list(extra or [])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=over)


def _samples(a: argparse.Namespace):
    from egt.data.world import make_world

    n = PROMPTS * (a.warmup + a.steps)
    return make_world({"seed": 0, "n_sft": 8, "n_rl": n, "n_bench": 8})["rl_pool"].select(range(n))


def _intervals(ends: list[float], warmup: int) -> list[float]:
    """Seconds of rollout k = end[k] − end[k−1], for k ≥ warmup (≥ 1)."""
    return [ends[k] - ends[k - 1] for k in range(max(1, warmup), len(ends))]


def _mark(ends: list[tuple[float, float]]) -> None:
    """The end of a rollout batch: wall clock and this process's CPU seconds (all its threads)."""
    ends.append((time.perf_counter(), time.process_time()))


def _report(framework: str, setting: str, a, ends: list[tuple[float, float]], extra: dict) -> None:
    import resource

    import torch

    steps = _intervals([e[0] for e in ends], a.warmup)
    cpu = _intervals([e[1] for e in ends], a.warmup)
    print(
        json.dumps(
            {
                "framework": framework,
                "setting": setting,
                "step_s_median": round(statistics.median(steps), 4),
                "step_s": [round(s, 4) for s in steps],
                "cpu_s_median": round(statistics.median(cpu), 4),
                "cpu_s": [round(s, 4) for s in cpu],
                "rollouts": len(ends),
                "threads": torch.get_num_threads(),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                **extra,
            }
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------- egt child
def child_egt(a: argparse.Namespace) -> None:
    from egt.rl import module as rl_module
    from egt.stages import rl as rl_stage

    cfg = _cfg(a, a.setting, a.egt_overrides)
    ends: list[tuple[float, float]] = []

    class Timed(rl_module.RLModule):
        def on_train_batch_end(self, outputs, batch, batch_idx):  # noqa: ANN001
            _mark(ends)
            super().on_train_batch_end(outputs, batch, batch_idx)

    rl_stage.RLModule = Timed  # the stage builds its module by this name
    ds = _samples(a)
    selection = {"ids": list(ds["id"]), "seed": a.seed, "shuffle_each_epoch": False}  # in order, as TRL's
    with tempfile.TemporaryDirectory(prefix="bench_rl_egt-") as tmp:
        summary = rl_stage.train(cfg, Path(tmp), Path(a.model_dir), ds, selection, data={})
        hist = json.loads((Path(tmp) / "curves.json").read_text())["steps"]
    kept = hist[a.warmup :]
    _report(
        "egt",
        a.setting,
        a,
        ends,
        {
            "optimizer_steps": summary["optimizer_steps"],
            "num_mini_batches": int(cfg.rl.num_mini_batches),
            "inner_step_s_median": round(statistics.median(h["rl/step_s"] for h in kept), 4),
            "completion_len": round(statistics.mean(h["rl/response_len"] for h in kept), 1),
        },
    )


# ---------------------------------------------------------------------------- TRL child
def child_trl(a: argparse.Namespace) -> None:
    import datasets
    from hydra.utils import instantiate
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from egt.data.prompt import build_user_text
    from egt.models.resolve import load_for_training

    cfg = _cfg(a, a.setting)
    model, processor = load_for_training(Path(a.model_dir), cfg)
    ds = _samples(a)
    samples = list(ds)
    reward = instantiate(cfg.reward)
    # the same user turn egt builds (images first, then the text): TRL inserts the image placeholders
    train = datasets.Dataset.from_dict(
        {
            "prompt": [
                [
                    {
                        "role": "user",
                        "content": build_user_text(s["query"], s["response_1"], s["response_2"], cfg.data.template),
                    }
                ]
                for s in samples
            ],
            "images": [s["images"] for s in samples],
            "idx": list(range(len(samples))),
        }
    )

    def egt_reward(prompts, completions, idx, **kw):  # noqa: ANN001
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward.terms([samples[i] for i in idx], texts).reward

    spg = int(cfg.rl.num_mini_batches)  # optimizer steps per rollout, as egt's mini-batches
    ends: list[tuple[float, float]] = []
    lengths: list[float] = []

    class Timed(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if state.global_step % spg == 0:  # the rollout's last optimizer step
                _mark(ends)

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "completions/mean_length" in logs and state.global_step > a.warmup * spg:
                lengths.append(float(logs["completions/mean_length"]))

    out = tempfile.TemporaryDirectory(prefix="bench_rl_trl-")  # removed at exit (save_strategy="no")
    args = GRPOConfig(
        output_dir=out.name,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        bf16=False,
        seed=a.seed,
        max_steps=(a.warmup + a.steps) * spg,
        num_generations=GROUP,
        per_device_train_batch_size=PROMPTS * GROUP // spg,
        steps_per_generation=spg,
        gradient_accumulation_steps=1,
        num_iterations=1,
        max_completion_length=a.new,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        learning_rate=float(cfg.rl.lr),
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=float(cfg.rl.max_grad_norm),
        beta=a.kl,
        epsilon=0.2,
        loss_type="grpo",
        scale_rewards="group",
        shuffle_dataset=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        gradient_checkpointing=a.trl_gradient_checkpointing,
    )  # TRL's default is on; egt's demo model: off
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=egt_reward,
        args=args,
        train_dataset=train,
        processing_class=processor,
        callbacks=[Timed()],
    )
    trainer.train()
    import trl

    _report(
        "trl",
        a.setting,
        a,
        ends,
        {
            "trl": trl.__version__,
            "optimizer_steps": trainer.state.global_step,
            "steps_per_generation": spg,
            "completion_len": round(statistics.mean(lengths), 1) if lengths else None,
        },
    )


# ---------------------------------------------------------------------------- parent
def build_demo(work: Path) -> Path:
    """The demo model exactly as the ``model`` stage (egt.stages.model) builds it (same spec and corpus)."""
    from omegaconf import OmegaConf

    from egt.data.world import WorldConfig
    from egt.models.builder import TinyVLMSpec, build_tiny_vlm
    from egt.models.corpus import world_corpus
    from egt.stages.model import CORPUS_LINES

    out = work / "demo_model"
    if not (out / "config.json").exists():
        spec = TinyVLMSpec(**OmegaConf.to_container(OmegaConf.load(CONF / "model" / "demo.yaml").build))
        build_tiny_vlm(out, spec, world_corpus(WorldConfig(seed=0), n=CORPUS_LINES))
    return out


def _env(trl_site: str | None, threads: int | None) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "disabled",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    # egt from the tree this file is in (a `git archive` copy benchmarks that revision), then TRL's folder
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), trl_site, env.get("PYTHONPATH")) if p)
    return env


def trl_version(env: dict[str, str]) -> str | None:
    proc = subprocess.run(
        [sys.executable, "-c", "import trl; print(trl.__version__)"], env=env, capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def run_child(a: argparse.Namespace, framework: str, setting: str, env: dict[str, str]) -> dict:
    argv = (
        [
            sys.executable,
            __file__,
            "--child",
            framework,
            "--setting",
            setting,
            "--model-dir",
            str(a.model_dir),
            "--steps",
            str(a.steps),
            "--warmup",
            str(a.warmup),
            "--new",
            str(a.new),
            "--kl",
            str(a.kl),
            "--seed",
            str(a.seed),
        ]
        + (["--threads", str(a.threads)] if a.threads else [])
        + (["--trl-gradient-checkpointing"] if a.trl_gradient_checkpointing else [])
    )
    if framework == "egt-base":  # egt with the baseline's overrides
        argv[argv.index("--child") + 1] = "egt"
        argv += ["--egt-overrides", *a.baseline_overrides]
    return run_json_child(argv, env, f"{framework}/{setting}") | {"framework": framework}


def run_json_child(argv: list[str], env: dict[str, str], what: str) -> dict:
    """Run a child process and return its last JSON line, with the 1-minute load before and after it
    and its wall seconds (``process_s``). Raises RuntimeError with the end of its stderr if it fails."""
    load = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    row = json.loads(lines[-1])
    row.update(load_1min=load, load_1min_after=_load(), process_s=round(time.perf_counter() - t0, 1))
    return row


def print_header(a: argparse.Namespace, sizes: str, per: str, trl: str | None) -> None:
    """The run's first lines: the tree, model, sizes, processes, CPUs, threads, load, and whether TRL is there."""
    print(
        f"# egt {REPO}; model {a.model_dir}; {sizes}; {a.repeats} processes × {a.steps} steps (+{a.warmup} "
        f"warm-up) {per}; {os.cpu_count()} CPUs, threads {a.threads or 'default'}; load {_load():.2f}",
        flush=True,
    )
    if trl is None:
        print("# TRL is not importable (pip install trl==1.16.0, or --trl-site DIR): egt only", flush=True)


def start(a: argparse.Namespace, children: dict) -> tuple[dict, dict, str | None] | None:
    """A child process runs its child (None); the parent gets the model directory (the demo model built in
    ``--workdir`` unless ``--model-dir``) and returns egt's and TRL's environments and TRL's version (None
    when it is not importable or ``--no-trl``)."""
    if ran_as_child(a, children):
        return None
    a.model_dir = Path(a.model_dir) if a.model_dir else build_demo(Path(a.workdir))
    env_egt, env_trl = _env(None, a.threads), _env(a.trl_site, a.threads)
    return env_egt, env_trl, None if a.no_trl else trl_version(env_trl)


def ran_as_child(a: argparse.Namespace, children: dict) -> bool:
    """In a child process (``--child NAME``): set the torch threads and run ``children[NAME](a)``; True if it
    did (the parent then returns)."""
    if not a.child:
        return False
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    children[a.child](a)
    return True


def table(rows: list[dict], settings: list[str], trl: str | None) -> str:
    """Per setting and clock (wall; CPU = this process's user + system seconds, all threads), min / median
    / max over processes of each process's median step, and the median (range) of the paired ratios."""

    def stats(xs: list[float]) -> str:
        return f"{min(xs):.3f} / **{statistics.median(xs):.3f}** / {max(xs):.3f}" if xs else "–"

    head = "| setting | clock | egt s/step: min / **median** / max |"
    if trl:
        head += f" TRL {trl} s/step: min / **median** / max | egt / TRL: median (range) of paired ratios |"
    lines = [
        head + " load (1 min) | processes × steps | completion tokens egt / TRL |",
        "|---|---|---|" + ("---|---|" if trl else "") + "---|---|---|",
    ]
    for s in settings:
        e = [r for r in rows if r["setting"] == s and r["framework"] == "egt"]
        t = [r for r in rows if r["setting"] == s and r["framework"] == "trl"]
        loads = [r["load_1min"] for r in e + t]
        for clock, key in (("wall", "step_s_median"), ("CPU", "cpu_s_median")):
            cells = [s, clock, stats([r[key] for r in e])]
            if trl:
                ratios = [x[key] / y[key] for x, y in zip(e, t)]  # the i-th of each ran in the same repeat
                paired = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "–"
                cells += [stats([r[key] for r in t]), paired]
            cells.append(f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–")
            cells.append(f"{len(e)} × {len(e[0]['step_s']) if e else 0}")
            lens = [
                statistics.mean(r["completion_len"] for r in rs)
                if rs and all(r.get("completion_len") for r in rs)
                else None
                for rs in (e, t)
            ]
            cells.append(" / ".join(f"{x:.1f}" for x in lens if x is not None) or "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["on_policy", "default"], choices=["on_policy", "default"])
    p.add_argument("--repeats", type=int, default=3, help="processes per (framework, setting)")
    p.add_argument("--steps", type=int, default=6, help="measured rollout batches per process")
    p.add_argument("--warmup", type=int, default=2, help="rollout batches dropped at the start of each process")
    p.add_argument("--new", type=int, default=48, help="max new tokens per completion")
    p.add_argument("--kl", type=float, default=1e-3, help="KL coefficient (egt rl.kl_coef, TRL beta)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads in both children (OMP_NUM_THREADS; default: torch's "
        "own, one per core). On a shared machine 1 is far steadier: two threads wait on each other "
        "whenever another process holds a core",
    )
    p.add_argument("--model-dir", help="an HF model directory (default: the demo model, built in --workdir)")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bench_rl_step"))
    p.add_argument("--trl-site", help="a folder holding trl (and accelerate), put on the TRL child's PYTHONPATH")
    p.add_argument(
        "--trl-gradient-checkpointing",
        action="store_true",
        help="TRL's own default (recomputes activations in backward); off by default, as egt's demo",
    )
    p.add_argument("--no-trl", action="store_true", help="egt only")
    p.add_argument(
        "--baseline-overrides",
        nargs="+",
        default=[],
        help="also run egt with these Hydra overrides (framework egt-base, alternating with the others), "
        "e.g. rl.shared_prompt_pass=false; prints egt / egt-base paired ratios",
    )
    p.add_argument("--child", choices=["egt", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--egt-overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    a = p.parse_args()
    started = start(a, {"egt": child_egt, "trl": child_trl})
    if started is None:  # this was a child process
        return
    env_egt, env_trl, trl = started
    print_header(a, f"G={GROUP}, {PROMPTS} prompts, {a.new} new tokens, kl {a.kl}", "per framework and setting", trl)
    rows = []
    for rep in range(a.repeats):
        for s in a.settings:
            order = (["egt", "trl"] if trl else ["egt"]) + (["egt-base"] if a.baseline_overrides else [])
            for fw in order if rep % 2 == 0 else order[::-1]:
                row = run_child(a, fw, s, env_trl if fw == "trl" else env_egt)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(table(rows, a.settings, trl))
    if a.baseline_overrides:
        print(f"\negt / egt-base ({' '.join(a.baseline_overrides)}): median (range) of paired ratios")
        for s in a.settings:
            e = [r for r in rows if r["setting"] == s and r["framework"] == "egt"]
            b = [r for r in rows if r["setting"] == s and r["framework"] == "egt-base"]
            for clock, key in (("wall", "step_s_median"), ("CPU", "cpu_s_median")):
                ratios = [x[key] / y[key] for x, y in zip(e, b)]
                print(
                    f"  {s} {clock}: {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}); "
                    f"egt-base median {statistics.median(r[key] for r in b):.3f} s"
                )


if __name__ == "__main__":
    main()
