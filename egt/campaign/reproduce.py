"""``python -m egt.reproduce --protocol docs/reproduction/protocol.md --out docs/reproduction/<run>
[--dry-run | --status | --report] [--sweeps DIR] [--artifacts DIR] [--workers N] [--skip-gates]``

Regenerates the whole small-scale reproduction (issue #20) from the settings block of the protocol
(the fenced ``yaml`` block whose first line is ``# egt-protocol``), in this order, per teacher format:

1. upstream: data, distillation, SFT, probe and the SFT model's evaluation (one run);
2. gate G1: the SFT judge's Overall on the bench lies in ``gates.sft_overall``;
3. calibration: Full RL on ``calibration_seeds`` (never used in a table); gate G2: it changes at least
   ``gates.rl_changed_min`` of the bench decisions against SFT (direction-free);
4. every sweep of ``sweeps`` (tier 1 with ``seeds`` seeds, tier 2 with ``seeds_tier2``), ``workers``
   processes at once, each with ``threads_per_process`` threads;
5. the report: ``python -m egt.report`` per format, tables with 95% CIs and paired differences, Figures 2
   and 4 with error bars, and ``verdict.md`` (egt.campaign.verdict).

A failed gate stops the run before any table: the protocol is then amended (its text says how) and
everything reruns. Wall time per step and the CPU count are printed and written to ``timings.md``.
``--dry-run`` prints the commands and the CPU time estimated from the protocol's measured timings;
``--status`` counts the finished jobs; ``--report`` writes an INTERIM report from them (neither runs a job).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from egt.campaign.protocol import Protocol, plan, read_protocol  # read_protocol: public here too

REPO = Path(__file__).resolve().parents[2]  # the checkout: egt/campaign/reproduce.py
# ---- the CPU estimate ---------------------------------------------------------------------------------------


def _compose(overrides: Sequence[str], hydra_cfg: bool = False):
    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401  (registers the schema)
    from egt.cli import CONF_DIR, rewrite_group_args

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=rewrite_group_args(["x", *overrides])[1:], return_hydra_config=hydra_cfg)


def selected(cfg: Any) -> int:
    """How many rl_pool samples the job's selection keeps (egt.select: k, then percentile, then fraction)."""
    n, s = int(cfg.data.world.n_rl), cfg.selection
    if s.name == "all":
        return n
    if s.k:
        return int(s.k)
    return round((s.percentile / 100 if s.percentile else (s.fraction or 1.0)) * n)


def arm_cost(cfg: Any, t: dict[str, float]) -> dict[str, Any]:
    """RL optimizer steps, re-probed and evaluated items and CPU seconds of one job (one seed)."""
    n, size, r = int(cfg.data.world.n_rl), selected(cfg), cfg.rl
    steps = math.ceil(size / r.batch_size) * r.num_mini_batches * r.ppo_epochs * r.epochs
    if r.max_steps and r.max_steps > 0:
        steps = min(steps, int(r.max_steps))
    every = int(cfg.curriculum.get("reprobe_every") or 0)
    reprobed = (int(r.epochs) - 1) // every * n if every > 0 else 0
    evaluated = int(cfg.data.world.n_bench) * (2 if cfg.eval.order == "both" else 1)
    cpu = steps * t["rl_step"] + reprobed * t["probe_item"] + evaluated * t["eval_item"] + t["job_overhead"]
    return {"selected": size, "steps": steps, "reprobed": reprobed, "evaluated": evaluated, "cpu_s": cpu}


def extra_cost(cfg: Any, t: dict[str, float], part: str) -> float:
    """CPU seconds of what a job computes upstream of selection beyond the greedy probe: ``part="probe"``, its
    probe's ``n`` draws per ``rl_pool`` sample; ``"rft"``, an rft fine-tuning (at most one kept trajectory per
    sample and epoch, ``keep=first``; priced at the SFT step; 0 without the stage).

    >>> from omegaconf import OmegaConf
    >>> c = OmegaConf.create({"data": {"world": {"n_rl": 100}}, "probe": {"n": 8}, "stages": ["rft"],
    ...     "sft": {"batch_size": 10, "epochs": 2}, "rft": {"sft": {}}})
    >>> t = {"probe_item": 0.5, "sft_step": 1.0}
    >>> extra_cost(c, t, "probe"), extra_cost(c, t, "rft")  # 8 x 100 x 0.5; 10 batches x 2 epochs x 1.0
    (400.0, 20.0)
    """
    n = int(cfg.data.world.n_rl)
    if part == "probe":
        return n * int(cfg.probe.n) * t["probe_item"]
    if "rft" not in [str(x) for x in cfg.stages]:
        return 0.0
    sft = {**dict(cfg.sft), **dict(cfg.rft.get("sft") or {})}
    return float(math.ceil(n / int(sft["batch_size"])) * int(sft["epochs"]) * t["sft_step"])


def _extra_signature(cfg: Any, part: str) -> str:
    """What makes a job's probe (``part="probe"``) or rft fine-tuning (``"rft"``) an artifact of its own."""
    from omegaconf import OmegaConf

    keep = OmegaConf.to_container(cfg.probe, resolve=True)
    if part == "rft":
        keep = {"probe": keep, "rft": OmegaConf.to_container(cfg.rft, resolve=True)} if "rft" in cfg.stages else None
    return json.dumps({part: keep}, sort_keys=True, default=str)


def _signature(cfg: Any) -> str:
    from omegaconf import OmegaConf

    keep = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("selection", "entropy", "curriculum", "rl")}
    return json.dumps(keep, sort_keys=True, default=str)


def estimate(p: Protocol) -> dict[str, Any]:
    """Unique RL arms per format (a cell shared by several tables is computed once: same artifact key),
    their cost per seed, and the CPU seconds of every phase; options that do not compose are listed."""
    t = p.settings["timings"]
    phases: dict[str, float] = {"upstream": 0.0, "extra upstream": 0.0, "calibration": 0.0, "tier1": 0.0, "tier2": 0.0}
    arms, missing = [], []
    for fmt, fmt_over in p.settings["formats"].items():
        base = [*p.settings["common"], *fmt_over, "rl.seed=1"]
        up = _compose([f"experiment={p.preset}", *base])
        kept = int(up.data.world.n_sft) * t.get("distill_kept", 0.97) * (1 - float(up.sft.val_fraction))
        sft_steps = math.ceil(kept / up.sft.batch_size) * up.sft.epochs
        if up.sft.max_steps and up.sft.max_steps > 0:
            sft_steps = min(sft_steps, int(up.sft.max_steps))
        phases["upstream"] += (
            sft_steps * t["sft_step"]
            + up.data.world.n_rl * t["probe_item"]
            + up.data.world.n_bench * (2 if up.eval.order == "both" else 1) * t["eval_item"]
            + t["stage_overhead"]
        )
        cal = arm_cost(_compose([f"experiment=[{p.preset},table2]", "ablation=full_rl", *base]), t)
        phases["calibration"] += cal["cpu_s"] * len(p.settings["calibration_seeds"])
        seen: dict[str, int] = {}  # arm signature -> seeds already paid for
        # probes other than the upstream's (a sampled one: n draws a sample) and rft fine-tunings, each paid once
        extra: set[str] = {_extra_signature(up, "probe"), _extra_signature(up, "rft")}
        for tier in (1, 2):
            for spec in (s for s in p.sweeps if s.tier == tier):
                exp = _compose([f"experiment=[{p.preset},{spec.experiment}]", *spec.overrides, *base], hydra_cfg=True)
                for combo in _product(_sweep_axes(exp, spec.sweep)):
                    try:
                        cfg = _compose([f"experiment=[{p.preset},{spec.experiment}]", *spec.overrides, *combo, *base])
                    except Exception as exc:  # an option that does not exist (yet)
                        missing.append(
                            f"{fmt} {spec.name}: {' '.join(combo)}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                        )
                        continue
                    c = arm_cost(cfg, t)
                    for part in ("probe", "rft"):
                        if _extra_signature(cfg, part) not in extra:
                            extra.add(_extra_signature(cfg, part))
                            phases["extra upstream"] += extra_cost(cfg, t, part)
                    sig, n_seeds = _signature(cfg), len(p.seeds(tier))
                    new = max(0, n_seeds - seen.get(sig, 0))
                    seen[sig] = max(seen.get(sig, 0), n_seeds)
                    phases[f"tier{tier}"] += new * c["cpu_s"]
                    arms.append(
                        {
                            "format": fmt,
                            "sweep": spec.name,
                            "arm": " ".join(combo),
                            "seeds": n_seeds,
                            "new_seeds": new,
                            **c,
                        }
                    )
    return {"phases": phases, "arms": arms, "missing": missing, "cpu_s": sum(phases.values())}


def _sweep_axes(exp: Any, sweep: dict[str, Any]) -> dict[str, str]:
    """A table sweep's axes as its jobs get them: the composed experiment's sweeper params (``rl.seed`` aside,
    the seeds), then the protocol's ``sweep`` axes as train.py rewrites its command line
    (:func:`egt.cli.rewrite_group_args`: ``rl.loss=a,b`` → ``rl/loss=a,b``), each in place of a sweeper param
    of the same key (Hydra's basic sweeper: the command line's value wins)."""
    from egt.cli import rewrite_group_args

    axes = {k: str(v) for k, v in exp.hydra.sweeper.params.items() if k != "rl.seed"}
    for arg in rewrite_group_args([f"{k}={v}" for k, v in sweep.items()]):
        key, _, value = arg.partition("=")
        axes[key] = value
    return axes


def _product(axes: dict[str, Any]) -> list[list[str]]:
    """Every combination of the sweep ``axes`` (``{key: "v1,v2"}``; the first key varies slowest), each as the
    ``key=value`` overrides Hydra's basic sweeper gives its jobs, which egt.sweep records in job.json: the
    values as Hydra's override parser writes them back (``3e-5`` → ``3e-05``, ``true`` → ``True``, a quoted
    value's commas kept), so that a job's recorded overrides contain its arm's.

    >>> _product({"rl.lr": "1e-5, 3e-5", "probe.both_orders": "true"})
    [['rl.lr=1e-05', 'probe.both_orders=True'], ['rl.lr=3e-05', 'probe.both_orders=True']]
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    combos: list[list[str]] = [[]]
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in axes.items()]):
        values = list(o.sweep_string_iterator()) if o.is_discrete_sweep() else [o.get_value_element_as_str()]
        combos = [c + [f"{o.get_key_element()}={x}"] for c in combos for x in values]
    return combos


def dry_run(p: Protocol, sweeps: Path, artifacts: Path, out: Path, workers: int) -> dict[str, Any]:
    print(f"protocol {p.path} (sha256 {p.sha256[:12]}); output {out}; sweeps under {sweeps}; artifacts {artifacts}")
    for s in plan(p, sweeps, artifacts):
        print(f"[{s['phase']}] {s['format']}/{s['name']}: " + " ".join(_quote(c) for c in s["cmd"][1:]))
    est = estimate(p)
    print("\n| format | sweep | arm | seeds | new seeds | selected | RL steps | re-probed | evaluated | CPU s / seed |")
    print("|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|")
    for a in est["arms"]:
        print(
            f"| {a['format']} | {a['sweep']} | {a['arm']} | {a['seeds']} | {a['new_seeds']} | {a['selected']} | "
            f"{a['steps']} | {a['reprobed']} | {a['evaluated']} | {a['cpu_s']:.0f} |"
        )
    for phase, sec in est["phases"].items():
        print(f"{phase}: {sec / 3600:.2f} CPU h")
    print(
        f"total: {est['cpu_s'] / 3600:.2f} CPU h; about {est['cpu_s'] / 3600 / workers:.2f} h wall with {workers} "
        f"processes of {p.settings.get('threads_per_process', 1)} thread(s) (this machine: {os.cpu_count()} CPUs)"
    )
    for m in est["missing"]:
        print(f"MISSING (the run would fail here; not in the total): {m}")
    return est


def _step_arms(p: Protocol, step: dict[str, Any]) -> list[list[str]]:
    """A table sweep's arms: every combination of its experiment's sweeper axes (``rl.seed`` aside) and
    the protocol's extra axes, each as its ``key=value`` overrides."""
    spec = next(s for s in p.sweeps if s.name == step["name"])
    exp = _compose(
        [
            f"experiment=[{p.preset},{spec.experiment}]",
            *spec.overrides,
            *p.settings["common"],
            *p.settings["formats"][step["format"]],
        ],
        hydra_cfg=True,
    )
    return _product(_sweep_axes(exp, spec.sweep))


def _step_seeds(p: Protocol, step: dict[str, Any]) -> int:
    if step["phase"] == "upstream":
        return 1
    if step["phase"] == "calibration":
        return len(p.settings["calibration_seeds"])
    return len(p.seeds(next(s for s in p.sweeps if s.name == step["name"]).tier))


def planned_jobs(p: Protocol, step: dict[str, Any]) -> int:
    """How many Hydra jobs a planned step runs: 1 upstream run, one per calibration seed, and for a
    table sweep every combination of its experiment's sweeper axes and the protocol's extra axes, times
    the tier's seeds."""
    arms = 1 if step["phase"] in ("upstream", "calibration") else len(_step_arms(p, step))
    return arms * _step_seeds(p, step)


# The stages a seed computes anew: the sweeps vary rl.seed, and the table experiments set selection.seed and
# curriculum.seed to it; data, distill, sft, probe and rft are keyed without it, so an arm's seeds share them.
PER_SEED_STAGES = ("select", "rl", "eval")


def seconds_left(p: Protocol, step: dict[str, Any], jobs: list[dict[str, Any]]) -> Optional[float]:
    """Estimated process seconds the step's unfinished jobs still need, from its finished ones (their train.log
    tables, :func:`egt.campaign.reproduction.computed_seconds`: every attempt's, reused stages not counted).
    An arm with a finished job: its remaining seeds at the median seconds of its finished jobs'
    :data:`PER_SEED_STAGES` (the stages its seeds share, e.g. a sampled probe or an rft fine-tuning, were paid
    by its first job); an arm with none: at the median seconds of the step's finished jobs. ``jobs``:
    ``{"overrides", "status", "seconds", "seed_seconds"}`` per job directory (``seed_seconds``: the
    :data:`PER_SEED_STAGES`' seconds; ``seconds`` where absent). None when work is left and no job of the step
    has finished (the dry run's estimate is then the only one). A failed job counts as left (the protocol
    reruns it once).
    """
    from statistics import median

    arms = [[]] if step["phase"] in ("upstream", "calibration") else _step_arms(p, step)
    seeds = _step_seeds(p, step)
    done = [j for j in jobs if j["status"] == "completed"]
    per_arm = [[j for j in done if set(arm) <= set(j["overrides"])] for arm in arms]
    left = [max(0, seeds - len(js)) for js in per_arm]
    if not any(left):
        return 0.0
    spent = [j["seconds"] for j in done if j["seconds"] > 0]
    if not spent:
        return None
    step_median = median(spent)
    total = 0.0
    for n, js in zip(left, per_arm):
        own = [s for s in (j.get("seed_seconds", j["seconds"]) for j in js) if s > 0]
        total += n * (median(own) if own else step_median)
    return total


def status(p: Protocol, sweeps: Path, artifacts: Path) -> list[dict[str, Any]]:
    """Where a run stands, read from its sweep directories (nothing runs): per planned step the jobs it
    plans, how many have a ``job.json`` that says completed or failed (egt.sweep), and the process seconds
    left (:func:`seconds_left`). A killed or paused run picks up from its artifacts when started again
    with the same command."""
    from egt.campaign.reproduction import computed_seconds
    from egt.sweep import JOB_FILE

    rows = []
    for step in plan(p, sweeps, artifacts):
        d = Path(step["dir"])
        files = [d / JOB_FILE] if step["phase"] == "upstream" else sorted(d.glob(f"*/{JOB_FILE}"))
        jobs = []
        for f in files:
            if not f.is_file():
                continue
            record = json.loads(f.read_text())
            log = f.parent / "train.log"
            text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
            jobs.append(
                {
                    "overrides": record.get("overrides") or [],
                    "status": record.get("status"),
                    "seconds": computed_seconds(text),
                    "seed_seconds": computed_seconds(text, PER_SEED_STAGES),
                }
            )
        states = [j["status"] for j in jobs]
        rows.append(
            {
                "phase": step["phase"],
                "format": step["format"],
                "name": step["name"],
                "planned": planned_jobs(p, step),
                "completed": states.count("completed"),
                "failed": states.count("failed"),
                "seconds_left": seconds_left(p, step, jobs),
            }
        )
    return rows


def progress(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(jobs completed, jobs planned) over :func:`status`'s rows (a step's extra jobs are not counted)."""
    return sum(min(r["completed"], r["planned"]) for r in rows), sum(r["planned"] for r in rows)


def wall_left(rows: list[dict[str, Any]], workers: int) -> Optional[float]:
    """Wall seconds left if each step takes its :func:`seconds_left`, scheduled as :func:`run` does: phases one
    after another, a phase's steps in plan order (``rows``' order) on ``workers`` threads (:func:`_phase`'s
    ``ThreadPoolExecutor.map``: a thread that comes free takes the next step), one process per step, its
    jobs one after another. None when a step with work left has no estimate yet.

    >>> wall_left([{"phase": "tier1", "seconds_left": 300.0}, {"phase": "tier1", "seconds_left": 100.0},
    ...            {"phase": "tier1", "seconds_left": 400.0}, {"phase": "tier2", "seconds_left": 50.0}], workers=2)
    550.0
    """
    phases: dict[str, list[float]] = {}
    for r in rows:
        if r["seconds_left"] is None:
            return None
        phases.setdefault(r["phase"], []).append(r["seconds_left"])
    total = 0.0
    for steps in phases.values():
        free = [0.0] * max(1, workers)  # when each thread comes free
        for seconds in steps:
            free[free.index(min(free))] += seconds
        total += max(free)
    return total


def print_status(rows: list[dict[str, Any]], workers: int = 1) -> None:
    print("| phase | format | sweep | completed / planned jobs | failed | process h left (est.) |")
    print("|:--|:--|:--|--:|--:|--:|")
    for r in rows:
        left = "?" if r["seconds_left"] is None else f"{r['seconds_left'] / 3600:.2f}"
        print(
            f"| {r['phase']} | {r['format']} | {r['name']} | {r['completed']} / {r['planned']} | {r['failed']} "
            f"| {left} |"
        )
    done, total = progress(rows)
    print(f"{done} of {total} jobs completed ({100 * done / max(total, 1):.0f}%)")
    wall = wall_left(rows, workers)
    if wall is None:
        print("time left: not estimable until every step with work left has finished a job (see --dry-run)")
    elif wall > 0:
        print(
            f"about {wall / 3600:.1f} h wall left with {workers} processes at once (each unfinished job at its "
            "arm's median computed seconds per seed so far, an arm not yet run at its sweep's median job; seconds "
            "measured while the machine was shared include that sharing)"
        )


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in ' "[]${}') else arg


# ---- the run --------------------------------------------------------------------------------------------------


def _execute(step: dict[str, Any], logs: Path, threads: int) -> float:
    """Run one step; a failed sweep is run once more (its finished jobs are reused from the artifact
    store, so only the failed ones recompute). Upstream and calibration must succeed; a table sweep
    that fails twice is left to the report, which lists its failed jobs."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    for attempt in (1, 2):
        with open(logs / f"{step['format']}_{step['name']}.{attempt}.log", "w", encoding="utf-8") as fh:
            rc = subprocess.run(step["cmd"], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        print(
            f"[{step['phase']}] {step['format']}/{step['name']}: exit {rc}, {wall / 60:.1f} min wall"
            f"{' (second attempt)' if attempt == 2 else ''}",
            flush=True,
        )
        if rc == 0:
            return wall
    if step["phase"] in ("upstream", "calibration"):
        raise RuntimeError(f"{step['format']}/{step['name']} failed twice (exit {rc}): see {logs}")
    return wall


def _phase(steps: list[dict[str, Any]], logs: Path, threads: int, workers: int) -> dict[str, float]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        walls = list(pool.map(lambda s: _execute(s, logs, threads), steps))
    return {f"{s['phase']} {s['format']}/{s['name']}": w for s, w in zip(steps, walls)}


def gate_sft(p: Protocol, sweeps: Path) -> list[str]:
    """G1: the SFT judge's Overall per format within gates.sft_overall (failures as messages)."""
    from egt.sweep import load_jobs

    lo, hi = p.settings["gates"]["sft_overall"]
    bad = []
    for fmt in p.settings["formats"]:
        vals = [
            m["metrics"]["overall"]
            for j in load_jobs(sweeps / fmt / "upstream")
            for m in j.get("metrics") or []
            if m["model"] == "sft"
        ]
        if not vals or not lo <= vals[0] <= hi:
            bad.append(f"G1 {fmt}: SFT Overall {vals[0] if vals else None} outside [{lo}, {hi}]")
    return bad


def gate_rl(p: Protocol, sweeps: Path, artifacts: Path) -> list[str]:
    """G2: Full RL on the calibration seeds changes >= gates.rl_changed_min of the bench decisions
    (direction-free: right <-> wrong) and still answers (parse failures <= gates.rl_parse_failures_max)."""
    from egt.campaign.paired import load_cells
    from egt.campaign.verdict import SHARED
    from egt.sweep import load_jobs

    g, bad = p.settings["gates"], []
    for fmt in p.settings["formats"]:
        jobs = load_jobs(sweeps / "calibration" / fmt)
        arms, _ = load_cells(jobs, artifacts)
        rl, sft = arms.get("table2:full_rl", {}), arms.get("sft", {}).get(SHARED)
        changed = [float(abs(v.astype(int) - sft.astype(int)).mean()) for v in rl.values()] if sft is not None else []
        mean = sum(changed) / len(changed) if changed else None
        fails = [
            m["metrics"].get("parse_failure_rate") or 0.0
            for j in jobs
            for m in j.get("metrics") or []
            if m["model"] == "rl"
        ]
        print(f"G2 {fmt}: Full RL changed {mean} of the bench's decisions (per seed {changed}); parse failures {fails}")
        if mean is None or mean < g["rl_changed_min"]:
            bad.append(f"G2 {fmt}: Full RL changed {mean} of the decisions, below {g['rl_changed_min']}")
        if fails and max(fails) > g.get("rl_parse_failures_max", 1.0):
            bad.append(f"G2 {fmt}: Full RL's parse failures {max(fails)} above {g['rl_parse_failures_max']}")
    return bad


def current_default(p: Protocol) -> Optional[str]:
    """The teacher format the default config (``python train.py``) already is: the one whose every
    override sets what the composed default has (None if not exactly one)."""
    from omegaconf import OmegaConf

    cfg = _compose([])
    hits = [
        fmt
        for fmt, over in p.settings["formats"].items()
        if all(OmegaConf.select(cfg, k.lstrip("+")) == yaml.safe_load(v) for k, v in (o.split("=", 1) for o in over))
    ]
    return hits[0] if len(hits) == 1 else None


def report(p: Protocol, sweeps: Path, artifacts: Path, out: Path) -> Path:
    """The written reproduction from the jobs finished so far (``--report``): an INTERIM verdict.md headed
    by the run's status, to read (or commit) while the run is under way or paused between sessions; once
    every planned job has completed (none failed, none left), the protocol's verdict itself, as the run
    writes it (so a finished run can be re-reported by newer report code without rerunning a job)."""
    from egt.campaign.reproduction import write_reproduction

    rows = status(p, sweeps, artifacts)
    done, total = progress(rows)
    pending = [
        f"{r['format']}/{r['name']} {r['completed']}/{r['planned']}" for r in rows if r["completed"] < r["planned"]
    ]
    text = (
        f"**{done} of {total} jobs finished** ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
        f"still to run: {', '.join(pending) or 'none'}."
    )
    out.mkdir(parents=True, exist_ok=True)
    finished = done == total and not any(r["failed"] for r in rows)
    return write_reproduction(p, sweeps, artifacts, out, current_default(p), interim=None if finished else text)


def run(p: Protocol, sweeps: Path, artifacts: Path, out: Path, workers: int, skip_gates: bool) -> int:
    t0, threads = time.perf_counter(), int(p.settings.get("threads_per_process", 1))
    steps, logs, walls = plan(p, sweeps, artifacts), sweeps / "logs", {}
    for phase in ("upstream", "calibration", "tier1", "tier2"):
        walls.update(_phase([s for s in steps if s["phase"] == phase], logs, threads, workers))
        bad = (
            []
            if skip_gates
            else gate_sft(p, sweeps)
            if phase == "upstream"
            else gate_rl(p, sweeps, artifacts)
            if phase == "calibration"
            else []
        )
        if bad:
            print(
                "gate failed, no table is run: amend the protocol (its 'Amendments' section) and rerun\n  "
                + "\n  ".join(bad),
                file=sys.stderr,
            )
            return 3
    from egt.campaign.reproduction import write_reproduction

    write_reproduction(p, sweeps, artifacts, out, current_default(p))
    total = time.perf_counter() - t0
    lines = ["| step | wall of this invocation (min) |", "|:--|--:|"]
    lines += [f"| {k} | {v / 60:.1f} |" for k, v in walls.items()]
    lines += [
        "",
        f"total wall {total / 60:.1f} min on {os.cpu_count()} CPUs, {workers} processes of {threads} "
        f"thread(s); protocol sha256 {p.sha256}",
        "",
        "A run continued after a kill reuses its finished jobs "
        "(seconds each here); the computed seconds of every sweep, however many invocations it took, are "
        "in verdict.md ('Time per sweep').",
    ]
    (out / "timings.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m egt.reproduce", description=__doc__.split("\n\n")[1])
    ap.add_argument("--protocol", required=True, help="protocol.md holding the '# egt-protocol' yaml block")
    ap.add_argument("--out", required=True, help="docs/reproduction/<run>: tables, figures, verdict.md, timings.md")
    ap.add_argument("--sweeps", help="Hydra sweep dirs and logs (default: multirun/<run name>)")
    ap.add_argument("--artifacts", help="artifact store (default: artifacts/reproduction)")
    ap.add_argument("--workers", type=int, help="processes at once (default: the protocol's workers)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and the estimated CPU time only")
    ap.add_argument("--skip-gates", action="store_true", help="run the tables even if G1/G2 fail (not the protocol)")
    ap.add_argument("--status", action="store_true", help="how many of the planned jobs have finished; runs nothing")
    ap.add_argument(
        "--report",
        action="store_true",
        help="write the report from the jobs finished so far (INTERIM "
        "until every planned job has completed); runs no job",
    )
    args = ap.parse_args(argv)
    p = read_protocol(args.protocol)
    out = Path(args.out)
    sweeps = Path(args.sweeps or REPO / "multirun" / out.name).resolve()
    artifacts = Path(args.artifacts or REPO / "artifacts" / "reproduction").resolve()
    workers = int(args.workers or p.settings.get("workers", 2))
    print(f"{os.cpu_count()} CPUs on this machine")
    if args.dry_run:
        dry_run(p, sweeps, artifacts, out, workers)
        return 0
    if args.status:
        print_status(status(p, sweeps, artifacts), workers)
        return 0
    if args.report:
        print(report(p, sweeps, artifacts, out))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    return run(p, sweeps, artifacts, out, workers, args.skip_gates)


if __name__ == "__main__":
    sys.exit(main())
