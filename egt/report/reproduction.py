"""The written reproduction (``python -m egt.reproduce``'s last step): per teacher format the usual
report (``python -m egt.report``), tables with 95% CIs and paired differences, Figures 2 and 4 with
error bars, and one ``verdict.md`` for the claims (a)–(f), the beyond-the-paper arms and how well each
entropy score finds flipped labels.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from egt.report.paired import ci_tables_markdown, fig2_ci, fig4_ci, load_cells
from egt.report.power import paired_difference
from egt.report.verdict import SHARED, beyond_rows, claim_rows, superiority, verdict_markdown
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

    return np.asarray(hydra.utils.instantiate(OmegaConf.load(CONF_DIR / "entropy" / f"{name}.yaml").score)(table),
                      dtype=np.float64)


def detection_rows(jobs: Sequence[dict[str, Any]], names: Sequence[str], reference: str = "answer",
                   margin: float = 0.05, n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
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
        row = {"score": name, "auroc": auroc(s_x, flipped), "precision15": at.get("keep15_flipped_precision"),
               "recall15": at.get("keep15_flipped_recall"), "flipped_in_kept15": at.get("keep15_flipped_in_kept"),
               "n": len(both), "diff": None, "lo": None, "hi": None, "verdict": "reference"}
        if name != reference:
            rng = np.random.default_rng(seed)
            diffs = []
            for _ in range(n_boot):
                i = rng.integers(0, len(both), len(both))
                a, b = auroc(s_x[i], flipped[i]), auroc(s_ref[i], flipped[i])
                if a is not None and b is not None:
                    diffs.append(a - b)
            lo, hi = np.percentile(diffs, [2.5, 97.5])
            row.update(diff=row["auroc"] - auroc(s_ref, flipped), lo=float(lo), hi=float(hi),
                       verdict=superiority(float(lo), float(hi), margin))
        rows.append(row)
    return rows


def detection_markdown(by_format: dict[str, list[dict[str, Any]]], margin: float) -> str:
    lines = ["| format | score | flipped-label AUROC | vs answer [95% CI] | precision@15% | recall@15% | "
             "flipped in kept 15% | verdict (better than answer) |", "|:--|:--|--:|--:|--:|--:|--:|:--|"]
    f = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    for fmt, rows in by_format.items():
        for r in rows:
            ci = "–" if r["lo"] is None else f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
            lines.append(f"| {fmt} | {r['score']} | {f(r['auroc'])} | {ci} | {f(r['precision15'])} | "
                         f"{f(r['recall15'])} | {f(r['flipped_in_kept15'])} | {r['verdict']} |")
    lines += ["", f"Paired bootstrap over the probed rl_pool samples (2,000 resamples); margin {margin:g} AUROC."]
    return "\n".join(lines)


def write_format(fmt: str, root: Path, artifacts: Path, out: Path, stats: dict[str, Any],
                 beyond_entropies: Sequence[str]) -> tuple[list[dict], list[dict], list[dict], dict[str, int]]:
    """One teacher format: its report, CI tables and figures under out/<fmt>; returns its verdict rows
    and its SFT judge's correctness per bench item."""
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
    (d / "tables_ci.md").write_text(ci_tables_markdown(arms, stats["alpha"]) + "\n", encoding="utf-8")
    fig4_ci(arms, d / "fig4_ci.png", stats["alpha"])
    rho, n = None, 0
    table = probe_table(jobs)
    if table is not None:
        fig2_ci(table, d / "fig2_ci.png", alpha=stats["alpha"])
        e, c = table["answer_entropy"].to_numpy(dtype=float), table["correct_score"].to_numpy(dtype=float)
        fin = np.isfinite(e)
        rho, n = spearman(e[fin], c[fin]), int(fin.sum())
    claims = claim_rows(arms, rho, n, stats["margin"], stats["rho_margin"], stats["alpha"])
    beyond = beyond_rows(arms, stats["margin"], stats["alpha"])
    detect = detection_rows(jobs, beyond_entropies, margin=stats["auroc_margin"])
    sft = arms.get("sft", {}).get(SHARED)
    return claims, beyond, detect, ({} if sft is None else dict(zip(ids, (int(v) for v in sft))))


def formats_markdown(sft: dict[str, dict[str, int]], alpha: float = 0.05) -> str:
    """The protocol's first criterion for the demo default: the SFT judges' accuracy, paired over the
    bench items both formats were scored on.

    >>> print(formats_markdown({"a": {"i1": 1, "i2": 1}, "b": {"i1": 0, "i2": 1}}).splitlines()[2])
    | a − b | 2 | +50.00 [-585.31, +685.31] |
    """
    names = [k for k, v in sft.items() if v]
    if len(names) != 2:
        return "(needs the SFT judges of two formats)"
    ids = sorted(set(sft[names[0]]) & set(sft[names[1]]))
    a, b = (np.array([[sft[n][i] for i in ids]]) for n in names)
    d = paired_difference(a, b, alpha)
    return "\n".join(["| SFT judges | items | Overall difference [95% CI] |", "|:--|--:|--:|",
                      f"| {names[0]} − {names[1]} | {len(ids)} | {100 * d.mean:+.2f} [{100 * d.lo:+.2f}, "
                      f"{100 * d.hi:+.2f}] |"])


def write_reproduction(p: Any, sweeps: Path, artifacts: Path, out: Path) -> Path:
    """Everything under ``out``; returns the path of verdict.md."""
    stats = p.settings["stats"]
    names = [n.strip() for s in p.sweeps for k, v in s.sweep.items() if k == "entropy" for n in v.split(",")]
    names = [n for n in dict.fromkeys(names) if n not in ("answer", "sentence", "mix")]
    claims, beyond, detect, sft = {}, {}, {}, {}
    for fmt in p.settings["formats"]:
        claims[fmt], beyond[fmt], detect[fmt], sft[fmt] = write_format(fmt, sweeps / fmt, artifacts, out, stats,
                                                                       ["sentence", "mix", *names])
    text = [f"# Verdicts ({p.path.name}, sha256 {p.sha256[:12]})", "",
            "## The paper's claims and the beyond-the-paper arms", "",
            verdict_markdown(claims, beyond, stats["margin"]), "", "## Which entropy finds flipped labels", "",
            detection_markdown(detect, stats["auroc_margin"]), "",
            "## Teacher formats: the SFT judges (the demo default's first criterion, protocol §3)", "",
            formats_markdown(sft, stats["alpha"]), ""]
    path = out / "verdict.md"
    path.write_text("\n".join(text), encoding="utf-8")
    return path
