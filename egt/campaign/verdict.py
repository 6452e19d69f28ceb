"""Verdicts on the paper's claims (a)–(f) and the beyond-the-paper arms, by the rules fixed in
docs/reproduction/protocol.md (issue #20).

An *arm* is a table cell, ``"<experiment>:<value>"`` as egt.report.experiments names them
(``table3:random``, ``fig4:0.15``) or ``sft``. Its data are ``{seed: [N] correctness}`` on the bench
items (1 right, 0 wrong); the SFT model is one model shared by every seed (seed :data:`SHARED`).
A *link* compares two arms with the paired difference of egt.campaign.power (same seeds, same items);
a claim is a chain of links.

Rules, with a margin m (2 points for accuracy):

- superiority (A beats B): **holds** if the 95% CI's lower end is above 0; else **refuted** if its upper
  end is below m (the data rule out a gain of m or more, a reversal included); else **inconclusive**.
- non-inferiority (A matches B): **holds** if the lower end is above -m; else **refuted** if the upper end
  is below 0 (A is worse, and a loss of m is not ruled out); else **inconclusive**.
- a claim holds if every link holds, is refuted if any link is refuted, else is inconclusive (an
  intersection-union test: "every link holds" needs no multiplicity correction).
- in an interim report (a run still under way) a link whose arm has no finished job yet is **not run
  yet**, and so is a claim with such a link and no refuted one; a finished run calls it inconclusive.
- (a), a negative correlation: superiority of -rho over 0 with margin 0.1.

With the design's minimum detectable difference equal to m, a true difference of 0 is refuted and
a true difference of m holds, each with probability 0.8.

>>> superiority(0.5, 3.0, 2.0), superiority(-1.0, 1.5, 2.0), superiority(-1.0, 2.5, 2.0)
('holds', 'refuted', 'inconclusive')
>>> non_inferiority(-1.5, 1.0, 2.0), non_inferiority(-4.0, -0.5, 2.0), non_inferiority(-2.5, 0.5, 2.0)
('holds', 'refuted', 'inconclusive')
>>> combine(["holds", "holds"]), combine(["holds", "refuted", "inconclusive"]), combine(["holds", "inconclusive"])
('holds', 'refuted', 'inconclusive')
>>> combine(["holds", "not run yet"]), combine(["not run yet", "refuted"])
('not run yet', 'refuted')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from egt.campaign.power import paired_difference, spearman_ci, t_ppf

HOLDS, REFUTED, INCONCLUSIVE, PENDING = "holds", "refuted", "inconclusive", "not run yet"
SHARED = -1  # the seed key of a model every seed shares (the SFT row)
Cells = Mapping[str, Mapping[int, np.ndarray]]  # arm -> {seed: [N] correctness}


def superiority(lo: float, hi: float, margin: float) -> str:
    if lo > 0:
        return HOLDS
    return REFUTED if hi < margin else INCONCLUSIVE


def non_inferiority(lo: float, hi: float, margin: float) -> str:
    if lo > -margin:
        return HOLDS
    return REFUTED if hi < 0 else INCONCLUSIVE


RULES = {"superiority": superiority, "non_inferiority": non_inferiority}


def combine(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if REFUTED in verdicts:
        return REFUTED
    return PENDING if PENDING in verdicts else INCONCLUSIVE


@dataclass(frozen=True)
class Link:
    better: str
    worse: str
    kind: str = "superiority"  # or non_inferiority

    @property
    def text(self) -> str:
        return f"{self.better} {'>' if self.kind == 'superiority' else '≈'} {self.worse}"


@dataclass(frozen=True)
class Claim:
    name: str
    text: str
    links: tuple[Link, ...] = ()  # empty: the correlation claim (a)


CLAIMS = (
    Claim("a", "answer entropy and accuracy are negatively correlated (Fig. 2)"),
    Claim(
        "b",
        "entropy ≥ random ≥ accuracy selection (Table 3)",
        (Link("table3:entropy", "table3:random"), Link("table3:random", "table3:accuracy")),
    ),
    Claim(
        "c",
        "answer ≥ mix ≥ sentence entropy (Table 4)",
        (Link("table4:answer", "table4:mix"), Link("table4:mix", "table4:sentence")),
    ),
    Claim(
        "d",
        "the low band beats mid and high (Table 5)",
        (Link("table5:low", "table5:mid"), Link("table5:low", "table5:high")),
    ),
    Claim(
        "e",
        "selection + sort ≥ selection ≥ full RL ≥ SFT (Table 2)",
        (
            Link("table2:selection_sort", "table2:selection"),
            Link("table2:selection", "table2:full_rl"),
            Link("table2:full_rl", "sft"),
        ),
    ),
    Claim("f", "the lowest 15% matches 100% (Fig. 4)", (Link("fig4:0.15", "fig4:1.0", "non_inferiority"),)),
)
# beyond the paper: each arm against the paper's method under the same RL budget (superiority)
BEYOND = (
    Link("table4:answer_debiased", "table4:answer"),
    Link("table4:sentence_fallback", "table4:answer"),
    Link("online:order", "online:static"),
    Link("online:selection", "online:static"),
)


def _matrices(cells: Cells, a: str, b: str) -> Optional[tuple[np.ndarray, np.ndarray, list[int]]]:
    """[S, N] of ``a`` and [S or 1, N] of ``b`` over the seeds both have (a shared model: every seed)."""
    if a not in cells or b not in cells or not cells[a] or not cells[b]:
        return None
    sa, sb = dict(cells[a]), dict(cells[b])
    if SHARED in sa and SHARED not in sb:
        return None  # only "RL arm vs shared model" is paired that way round
    if SHARED in sb:
        seeds = sorted(sa)
        return np.stack([sa[s] for s in seeds]), np.asarray(sb[SHARED])[None, :], seeds
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return None
    return np.stack([sa[s] for s in seeds]), np.stack([sb[s] for s in seeds]), seeds


def link_row(
    cells: Cells, link: Link, margin: float, alpha: float = 0.05, power: float = 0.8, interim: bool = False
) -> dict[str, Any]:
    """Difference better - worse in points with its CI, the seeds used, the design's minimum detectable
    difference at the measured variance, and the link's verdict (``interim``: a missing arm is not run
    yet rather than a failure that leaves the link inconclusive)."""
    row: dict[str, Any] = {"link": link.text, "kind": link.kind}
    m = _matrices(cells, link.better, link.worse)
    if m is None:
        return {
            **row,
            "diff": None,
            "lo": None,
            "hi": None,
            "seeds": 0,
            "verdict": PENDING if interim else INCONCLUSIVE,
            "note": "" if interim else "arm missing",
        }
    a, b, seeds = m
    if a.shape[0] < 2 and b.shape[0] == a.shape[0]:
        return {
            **row,
            "diff": None,
            "lo": None,
            "hi": None,
            "seeds": len(seeds),
            "verdict": INCONCLUSIVE,
            "note": "fewer than 2 paired seeds",
        }
    d = paired_difference(a, b, alpha)
    lo, hi = 100 * d.lo, 100 * d.hi
    # the difference this design detects with 80% power at its measured variance (not at its effect)
    detectable = 100 * d.se * (t_ppf(1 - alpha / 2, d.df) + t_ppf(power, d.df)) if d.se > 0 else 0.0
    return {
        **row,
        "diff": 100 * d.mean,
        "lo": lo,
        "hi": hi,
        "seeds": len(seeds),
        "df": d.df,
        "mde": detectable,
        "verdict": RULES[link.kind](lo, hi, margin),
        "note": "",
    }


def correlation_row(rho: Optional[float], n: int, margin: float, alpha: float = 0.05) -> dict[str, Any]:
    """Claim (a) from Spearman rho(answer entropy, correctness) over n probed samples.

    >>> correlation_row(-0.2, 1000, 0.1)["verdict"], correlation_row(0.0, 1000, 0.1)["verdict"]
    ('holds', 'refuted')
    >>> correlation_row(-0.05, 1000, 0.1)["verdict"]
    'inconclusive'
    """
    if rho is None or n < 4:
        return {
            "link": "rho(answer entropy, correct)",
            "kind": "correlation",
            "diff": None,
            "lo": None,
            "hi": None,
            "seeds": 0,
            "verdict": INCONCLUSIVE,
            "note": "no probe table or no finite answer entropy",
        }
    lo, hi = spearman_ci(rho, n, alpha)
    return {
        "link": "rho(answer entropy, correct)",
        "kind": "correlation",
        "diff": rho,
        "lo": lo,
        "hi": hi,
        "seeds": 0,
        "n": n,
        "verdict": superiority(-hi, -lo, margin),
        "note": f"n = {n} samples",
    }


def claim_rows(
    cells: Cells,
    rho: Optional[float],
    n_probe: int,
    margin: float = 2.0,
    rho_margin: float = 0.1,
    alpha: float = 0.05,
    claims: Sequence[Claim] = CLAIMS,
    interim: bool = False,
) -> list[dict[str, Any]]:
    """One row per claim (its verdict) followed by one per link."""
    out = []
    for c in claims:
        links = (
            [correlation_row(rho, n_probe, rho_margin, alpha)]
            if not c.links
            else [link_row(cells, link, margin, alpha, interim=interim) for link in c.links]
        )
        out.append({"claim": c.name, "text": c.text, "verdict": combine([r["verdict"] for r in links]), "links": links})
    return out


def beyond_rows(
    cells: Cells, margin: float = 2.0, alpha: float = 0.05, links: Sequence[Link] = BEYOND, interim: bool = False
) -> list[dict[str, Any]]:
    return [link_row(cells, link, margin, alpha, interim=interim) for link in links if link.better in cells]


METHODS_REFERENCE = "methods:egt"  # issue 35: every method is compared with EGT (answer entropy, lowest 15%)


def method_rows(cells: Cells, margin: float = 2.0, alpha: float = 0.05, interim: bool = False) -> list[dict[str, Any]]:
    """The methods comparison's verdicts (docs/methods/protocol.md): for each method arm M other than EGT's,
    the link "M > EGT" (superiority, paired over seeds and bench items): **holds** if M beats EGT, **refuted**
    if the data rule out a gain of ``margin`` points or more for M, else **inconclusive**. Arms in the
    methods table's row order; none without EGT's arm or any other method arm."""
    from egt.report.experiments import EXPERIMENTS

    order = [f"methods:{v}" for v, _ in next(e for e in EXPERIMENTS if e.name == "methods").rows]
    arms = [a for a in cells if a.startswith("methods:") and a != METHODS_REFERENCE]
    arms.sort(key=lambda a: (order.index(a) if a in order else len(order), a))
    return [link_row(cells, Link(a, METHODS_REFERENCE), margin, alpha, interim=interim) for a in arms]


def methods_markdown(by_format: Mapping[str, list[dict[str, Any]]], margin: float) -> str:
    """The methods verdict table: per teacher format and method, M − EGT in points [95% CI], the difference the
    run could detect, seeds, verdict of "M > EGT"."""
    lines = [
        "| format | method | M − EGT [95% CI] | detectable | seeds | verdict (M > EGT) |",
        "|:--|:--|--:|--:|--:|:--|",
    ]
    for fmt, rows in by_format.items():
        for r in rows:
            note = f" ({r['note']})" if r.get("note") and r["lo"] is None else ""
            method = r["link"].split(" ", 1)[0].split(":", 1)[-1]
            lines.append(f"| {fmt} | {method} | {_ci(r)} | {_mde(r)} | {r['seeds']} | {r['verdict']}{note} |")
    lines += [
        "",
        f"Overall accuracy points, paired over seeds and bench items, margin {margin:g} points: holds = the method "
        f"beats EGT; refuted = a gain of {margin:g} points or more is ruled out (a loss included); 'detectable': "
        "the difference this design finds with 80% power at the measured variance. Rules: "
        "egt.campaign.verdict.method_rows, docs/methods/protocol.md.",
    ]
    return "\n".join(lines)


def _num(v: Optional[float], digits: int = 2) -> str:
    return "–" if v is None else f"{v:+.{digits}f}"


def _ci(r: dict[str, Any]) -> str:
    d = 3 if r["kind"] == "correlation" else 2
    return "–" if r["lo"] is None else f"{_num(r['diff'], d)} [{_num(r['lo'], d)}, {_num(r['hi'], d)}]"


def _mde(r: dict[str, Any]) -> str:
    return "–" if r.get("mde") is None else f"{r['mde']:.2f}"


def verdict_markdown(
    by_format: Mapping[str, list[dict[str, Any]]], beyond: Mapping[str, list[dict[str, Any]]], margin: float
) -> str:
    """The verdict table: claim, link, measured difference [95% CI], seeds, verdict, per teacher format."""
    lines = [
        "| format | claim | comparison | difference [95% CI] | detectable | seeds | verdict |",
        "|:--|:--|:--|--:|--:|--:|:--|",
    ]
    for fmt, rows in by_format.items():
        for c in rows:
            lines.append(f"| {fmt} | **({c['claim']})** {c['text']} | | | | | **{c['verdict']}** |")
            for r in c["links"]:
                note = f" ({r['note']})" if r.get("note") and r["lo"] is None else ""
                lines.append(
                    f"| {fmt} | | {r['link']} | {_ci(r)} | {_mde(r)} | {r['seeds'] or r.get('n', '')} | "
                    f"{r['verdict']}{note} |"
                )
        for r in beyond.get(fmt, []):
            lines.append(
                f"| {fmt} | beyond the paper | {r['link']} | {_ci(r)} | {_mde(r)} | {r['seeds']} | {r['verdict']} |"
            )
    lines += [
        "",
        f"Differences in Overall accuracy points (correlation: Spearman rho), paired over seeds and bench "
        f"items; margin {margin:g} points (rho: 0.1). 'detectable': the difference this design finds with 80% "
        "power at the variance measured in the run. Rules: egt.campaign.verdict, docs/reproduction/protocol.md.",
    ]
    return "\n".join(lines)
