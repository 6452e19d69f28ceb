"""The written reproduction (``python -m egt.campaign.reproduce``'s last step): per teacher format the usual
report (``python -m egt.report``), tables with 95% CIs and paired differences, Figures 2 and 4 with
error bars, and one ``verdict.md`` for the claims (a)–(f), the beyond-the-paper arms and how well each
entropy score finds flipped labels.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Collection, Optional, Sequence

import numpy as np
import pandas as pd

from egt.campaign.paired import ci_tables_markdown, fig2_ci, fig4_ci, load_cells, training_sets
from egt.campaign.power import paired_difference
from egt.campaign.verdict import (
    SHARED,
    beyond_rows,
    claim_rows,
    method_rows,
    methods_markdown,
    superiority,
    verdict_markdown,
)
from egt.select.noise import auroc, noise_at_fractions
from egt.sweep import load_jobs, override_value

log = logging.getLogger(__name__)


def probe_table(jobs: Sequence[dict[str, Any]], entropy: Optional[str] = None) -> Optional[pd.DataFrame]:
    """The probe table copied beside a job (of a job that ran entropy=<entropy>, if given)."""
    for j in jobs:
        name = (j.get("files") or {}).get("probe")
        if name and (entropy is None or _entropy_of(j) == entropy) and (Path(j["_dir"]) / name).is_file():
            return pd.read_parquet(Path(j["_dir"]) / name)
    return None


def _entropy_of(job: dict[str, Any]) -> Optional[str]:
    return override_value(job, "entropy") or (job.get("choices") or {}).get("entropy")


def entropy_scores(name: str, table: pd.DataFrame) -> np.ndarray:
    """Scores of the ``entropy=<name>`` option (conf/entropy/<name>.yaml) on a probe table."""
    import hydra
    from omegaconf import OmegaConf

    from egt.cli import CONF_DIR

    return np.asarray(
        hydra.utils.instantiate(OmegaConf.load(CONF_DIR / "entropy" / f"{name}.yaml").score)(table), dtype=np.float64
    )


def auroc_diff_ci(
    sa: np.ndarray, sb: np.ndarray, flipped: np.ndarray, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Paired bootstrap (1 - alpha) CI of AUROC(sa → flipped) − AUROC(sb → flipped): [n] scores of the
    same n samples, resampled together; resamples with one class only are dropped."""
    rng, diffs = np.random.default_rng(seed), []
    for _ in range(n_boot):
        i = rng.integers(0, len(flipped), len(flipped))
        x, y = auroc(sa[i], flipped[i]), auroc(sb[i], flipped[i])
        if x is not None and y is not None:
            diffs.append(x - y)
    lo, hi = np.percentile(diffs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def detection_rows(
    jobs: Sequence[dict[str, Any]],
    names: Sequence[str],
    reference: str = "answer",
    margin: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Does entropy score X find flipped labels better than the reference (answer entropy)? AUROC as a
    flipped-label detector with a paired bootstrap CI of the difference (same samples), and precision /
    recall of "dropped ⇒ flipped" when the lowest 15% are kept."""
    tables = {n: probe_table(jobs, n) for n in [reference, *names]}
    ref = tables.get(reference)
    if ref is None or "flipped" not in ref:
        return []
    rows = []
    for name in [reference, *names]:
        t = tables.get(name)
        if t is None:
            continue
        both = ref[["id"]].merge(t, on="id")
        s_ref = np.nan_to_num(entropy_scores(reference, ref.set_index("id").loc[both["id"]].reset_index()), posinf=1e30)
        s_x = np.nan_to_num(entropy_scores(name, both), posinf=1e30)
        flipped = both["flipped"].fillna(False).to_numpy(dtype=bool)
        at = noise_at_fractions(both, s_x, (0.15,))
        row = {
            "score": name,
            "auroc": auroc(s_x, flipped),
            "precision15": at.get("keep15_flipped_precision"),
            "recall15": at.get("keep15_flipped_recall"),
            "flipped_in_kept15": at.get("keep15_flipped_in_kept"),
            "n": len(both),
            "diff": None,
            "lo": None,
            "hi": None,
            "verdict": "reference",
        }
        if name != reference:
            lo, hi = auroc_diff_ci(s_x, s_ref, flipped, n_boot=n_boot, seed=seed)
            row.update(diff=row["auroc"] - auroc(s_ref, flipped), lo=lo, hi=hi, verdict=superiority(lo, hi, margin))
        rows.append(row)
    return rows


def detection_markdown(by_format: dict[str, list[dict[str, Any]]], margin: float) -> str:
    lines = [
        "| format | score | flipped-label AUROC | vs answer [95% CI] | precision@15% | recall@15% | "
        "flipped in kept 15% | verdict (better than answer) |",
        "|:--|:--|--:|--:|--:|--:|--:|:--|",
    ]
    f = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    for fmt, rows in by_format.items():
        for r in rows:
            ci = "–" if r["lo"] is None else f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
            lines.append(
                f"| {fmt} | {r['score']} | {f(r['auroc'])} | {ci} | {f(r['precision15'])} | "
                f"{f(r['recall15'])} | {f(r['flipped_in_kept15'])} | {r['verdict']} |"
            )
    lines += ["", f"Paired bootstrap over the probed rl_pool samples (2,000 resamples); margin {margin:g} AUROC."]
    return "\n".join(lines)


def write_format(
    fmt: str,
    root: Path,
    artifacts: Path,
    out: Path,
    stats: dict[str, Any],
    beyond_entropies: Sequence[str],
    interim: bool = False,
) -> tuple[list[dict], list[dict], list[dict], dict[str, int], Optional[pd.DataFrame]]:
    """One teacher format: its report, CI tables and figures under out/<fmt>; returns its verdict rows,
    its SFT judge's correctness per bench item and its probe table (``interim``: arms without a
    finished job are not run yet, egt.campaign.verdict)."""
    from egt.report.__main__ import write_report
    from egt.report.figures import spearman

    d = out / fmt
    d.mkdir(parents=True, exist_ok=True)
    try:
        write_report(root, d)
    except (FileNotFoundError, KeyError) as exc:
        log.warning("%s: no report (%s)", fmt, exc)
    jobs = load_jobs(root)
    arms, ids = load_cells(jobs, artifacts)
    (d / "tables_ci.md").write_text(
        ci_tables_markdown(arms, stats["alpha"], training_sets(jobs)) + "\n", encoding="utf-8"
    )
    fig4_ci(arms, d / "fig4_ci.png", stats["alpha"])
    rho, n = None, 0
    table = probe_table(jobs)
    if table is not None:
        fig2_ci(table, d / "fig2_ci.png", alpha=stats["alpha"])
        e, c = table["answer_entropy"].to_numpy(dtype=float), table["correct_score"].to_numpy(dtype=float)
        fin = np.isfinite(e)
        rho, n = spearman(e[fin], c[fin]), int(fin.sum())
    claims = claim_rows(arms, rho, n, stats["margin"], stats["rho_margin"], stats["alpha"], interim=interim)
    beyond = beyond_rows(arms, stats["margin"], stats["alpha"], interim=interim)
    beyond += method_rows(arms, stats["margin"], stats["alpha"], interim=interim)  # issue 35's arms, if any
    detect = detection_rows(jobs, beyond_entropies, margin=stats["auroc_margin"])
    sft = arms.get("sft", {}).get(SHARED)
    return claims, beyond, detect, ({} if sft is None else dict(zip(ids, (int(v) for v in sft)))), table


def formats_markdown(sft: dict[str, dict[str, int]], alpha: float = 0.05) -> str:
    """The protocol's first criterion for the demo default: the SFT judges' accuracy, paired over the
    bench items both formats were scored on.

    >>> print(formats_markdown({"a": {"i1": 1, "i2": 1}, "b": {"i1": 0, "i2": 1}}).splitlines()[2])
    | a − b | 2 | +50.00 [-585.31, +685.31] |
    """
    names = [k for k, v in sft.items() if v]
    if len(names) != 2:
        return "(needs the SFT judges of two formats)"
    d = _sft_difference(sft, names, alpha)
    return "\n".join(
        [
            "| SFT judges | items | Overall difference [95% CI] |",
            "|:--|--:|--:|",
            f"| {names[0]} − {names[1]} | {d['n']} | {d['diff']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] |",
        ]
    )


def _sft_difference(sft: dict[str, dict[str, int]], names: Sequence[str], alpha: float) -> dict[str, Any]:
    ids = sorted(set(sft[names[0]]) & set(sft[names[1]]))
    a, b = (np.array([[sft[n][i] for i in ids]]) for n in names)
    d = paired_difference(a, b, alpha)
    return {"n": len(ids), "diff": 100 * d.mean, "lo": 100 * d.lo, "hi": 100 * d.hi}


def auroc_difference(
    a: pd.DataFrame, b: pd.DataFrame, score: str = "answer", alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> Optional[dict[str, Any]]:
    """AUROC(score of ``a`` → flipped) − AUROC(score of ``b`` → flipped) over the rl_pool ids both probe
    tables hold, with a paired bootstrap CI (resampling ids; the flipped flag is the sample's, the same
    in both). None without the flag or without both classes.

    >>> t = pd.DataFrame({"id": list("abcdef"), "flipped": [1, 1, 0, 0, 0, 1],
    ...                   "answer_entropy": [.9, .8, .1, .2, .3, .7]})
    >>> d = auroc_difference(t, t.assign(answer_entropy=[.1, .2, .9, .8, .3, .7]), n_boot=200)
    >>> round(d["a"], 3), round(d["b"], 3), round(d["diff"], 3), d["n"]  # b: of 9 flipped/clean pairs only .7 > .3
    (1.0, 0.111, 0.889, 6)
    """
    if "flipped" not in a:
        return None
    ids = sorted(set(a["id"]) & set(b["id"]))
    ta, tb = (t.drop_duplicates("id").set_index("id").loc[ids].reset_index() for t in (a, b))
    fl = ta["flipped"].fillna(False).to_numpy(dtype=bool)
    sa, sb = (np.nan_to_num(entropy_scores(score, t), posinf=1e30) for t in (ta, tb))
    ra, rb = auroc(sa, fl), auroc(sb, fl)
    if ra is None or rb is None:
        return None
    lo, hi = auroc_diff_ci(sa, sb, fl, alpha, n_boot, seed)
    return {"a": ra, "b": rb, "diff": ra - rb, "lo": lo, "hi": hi, "n": len(ids)}


def default_choice(
    sft: dict[str, dict[str, int]],
    probes: dict[str, Optional[pd.DataFrame]],
    current: Optional[str],
    alpha: float = 0.05,
) -> tuple[Optional[str], str]:
    """The demo default by the protocol's §3 rules, none of which looks at an RL table: (1) the more
    accurate SFT judge if the paired CI of the Overall difference excludes 0; else (2) the format whose
    answer entropy finds flipped labels better if the paired bootstrap CI of the AUROC difference
    excludes 0; else (3) ``current`` (the format the default config already is) stays.
    Returns (the chosen format or None when two formats' results are missing, the reasoning in Markdown)."""
    names = [k for k in sft if sft[k]]
    if len(names) != 2:
        return None, "(needs the SFT judges of two formats)"
    d = _sft_difference(sft, names, alpha)
    lines = [
        f"1. SFT judges, {names[0]} − {names[1]}: {d['diff']:+.2f} points [{d['lo']:+.2f}, {d['hi']:+.2f}] "
        f"over {d['n']} bench items"
    ]
    if d["lo"] > 0 or d["hi"] < 0:
        chosen = names[0] if d["lo"] > 0 else names[1]
        return chosen, "\n".join(lines + [f"   → the CI excludes 0: **{chosen}** is the demo default (rule 1)."])
    lines[-1] += ": the CI includes 0, so rule 1 does not decide."
    pa, pb = probes.get(names[0]), probes.get(names[1])
    r = None if pa is None or pb is None else auroc_difference(pa, pb, "answer", alpha)
    if r is None:
        lines.append("2. flipped-label AUROC of answer entropy: a probe table (or its flipped flag) is missing.")
    else:
        lines.append(
            f"2. flipped-label AUROC of answer entropy, {names[0]} {r['a']:.3f} − {names[1]} {r['b']:.3f} "
            f"= {r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] (paired bootstrap over {r['n']} rl_pool "
            "samples)"
        )
        if r["lo"] > 0 or r["hi"] < 0:
            chosen = names[0] if r["lo"] > 0 else names[1]
            return chosen, "\n".join(lines + [f"   → the CI excludes 0: **{chosen}** is the demo default (rule 2)."])
        lines[-1] += ": the CI includes 0, so rule 2 does not decide."
    lines.append(f"3. → the current default stays: **{current}** (rule 3).")
    return current, "\n".join(lines)


_COMPUTED = re.compile(r"^(\w+)\s+computed\s+([\d.]+)\s", re.M)


def computed_seconds(log_text: str, stages: Optional[Collection[str]] = None) -> float:
    """Seconds of the stages a job computed (not reused), summed over every end-of-run table in its
    train.log (egt.cli's "stage  state  seconds  headline" table; Hydra appends to the log, so a job
    rerun after a kill adds its new table; a process killed before its table adds nothing); ``stages``:
    those stages' only.

    >>> text = ("stage    state     seconds  headline\\nprobe    computed    500.0  x\\n"
    ...         "rl       computed    775.7  250 steps\\neval     reused        0.6  sft 72.5%\\n"
    ...         "eval     computed    103.2  x\\n")
    >>> computed_seconds(text), computed_seconds(text, stages=("rl", "eval"))
    (1378.9, 878.9)
    """
    rows = [(m.group(1), float(m.group(2))) for m in _COMPUTED.finditer(log_text)]
    return round(sum(s for stage, s in rows if stages is None or stage in stages), 6)


def sweep_seconds(sweeps: Path, formats: Sequence[str]) -> str:
    """Computed stage seconds per sweep, read from the jobs' train.log tables (:func:`computed_seconds`):
    the run's cost however many sessions, pauses and restarts it took (job.json's ``seconds`` is the
    last process's, a few seconds for a job whose artifacts were all reused)."""
    lines = [
        "| format | sweep | jobs that computed | computed seconds (sum) | median per job |",
        "|:--|:--|--:|--:|--:|",
    ]
    total = 0.0
    for fmt in formats:
        for name, root in [
            ("upstream", sweeps / fmt / "upstream"),
            ("calibration", sweeps / "calibration" / fmt),
            *sorted((p.name, p) for p in (sweeps / fmt).glob("*") if p.is_dir() and p.name != "upstream"),
        ]:
            secs = [
                s
                for s in (
                    computed_seconds(f.read_text(encoding="utf-8", errors="replace"))
                    for f in sorted(root.rglob("train.log"))
                )
                if s > 0
            ]
            if secs:
                total += sum(secs)
                lines.append(f"| {fmt} | {name} | {len(secs)} | {sum(secs):,.0f} | {float(np.median(secs)):,.0f} |")
    lines += [
        "",
        f"Total: {total / 3600:.2f} process hours of computed stages (each job one process of the "
        "protocol's threads; processes killed before their end-of-run table are not counted).",
    ]
    return "\n".join(lines)


def write_reproduction(
    p: Any,
    sweeps: Path,
    artifacts: Path,
    out: Path,
    current_default: Optional[str] = None,
    interim: Optional[str] = None,
) -> Path:
    """Everything under ``out``; returns the path of verdict.md. ``current_default``: the format the
    default config already is (rule 3 of the demo default); ``interim``: the run is still under way
    (this text, e.g. how many jobs are done, heads verdict.md, and arms without a finished job are not
    run yet)."""
    stats = p.settings["stats"]
    names = [n.strip() for s in p.sweeps for k, v in s.sweep.items() if k == "entropy" for n in v.split(",")]
    names = [n for n in dict.fromkeys(names) if n not in ("answer", "sentence", "mix")]
    claims, beyond, detect, sft, probes = {}, {}, {}, {}, {}
    for fmt in p.settings["formats"]:
        claims[fmt], beyond[fmt], detect[fmt], sft[fmt], probes[fmt] = write_format(
            fmt, sweeps / fmt, artifacts, out, stats, ["sentence", "mix", *names], interim=interim is not None
        )
    _, choice = default_choice(sft, probes, current_default, stats["alpha"])
    head = [f"# Verdicts ({p.path.name}, sha256 {p.sha256[:12]})", ""]
    if interim is not None:
        head = [
            f"# INTERIM verdicts ({p.path.name}, sha256 {p.sha256[:12]}): the run is under way",
            "",
            "Not the protocol's verdict: arms with fewer seeds than the protocol's are provisional and arms "
            "without a finished job are *not run yet*. The finished run rewrites this file.",
            "",
            interim,
            "",
        ]
    # which verdicts the protocol asks for: the paper's claims (docs/reproduction) and / or the methods
    # against EGT (docs/methods); a method row is a "methods:" arm's link, the rest the paper's beyond arms
    asked = p.settings.get("verdicts", ["paper"])
    methods = {f: [r for r in rows if r["link"].startswith("methods:")] for f, rows in beyond.items()}
    beyond = {f: [r for r in rows if not r["link"].startswith("methods:")] for f, rows in beyond.items()}
    paper = [
        "## The paper's claims and the beyond-the-paper arms",
        "",
        verdict_markdown(claims, beyond, stats["margin"]),
        "",
        "## Which entropy finds flipped labels",
        "",
        detection_markdown(detect, stats["auroc_margin"]),
        "",
    ]
    versus = ["## Methods against EGT", "", methods_markdown(methods, stats["margin"]), ""]
    text = [
        *head,
        *(paper if "paper" in asked else []),
        *(versus if "methods" in asked else []),
        "## Teacher formats: the demo default (protocol §3; no RL table is looked at)",
        "",
        formats_markdown(sft, stats["alpha"]),
        "",
        choice,
        "",
        "## Time per sweep",
        "",
        sweep_seconds(sweeps, list(p.settings["formats"])),
        "",
    ]
    path = out / "verdict.md"
    path.write_text("\n".join(text), encoding="utf-8")
    return path
