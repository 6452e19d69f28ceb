"""Generic result tables: rows of (label, metrics dicts) × a column spec → Markdown / LaTeX (booktabs).

A row holds one metrics dict per run (e.g. per seed); a cell is the mean over the runs
that have the column's key, with ± sample sd when there are several. Columns say how to
scale, round, and whether to bold the best value. Paper Tables 1–5 are all built this way.

>>> t = build_table([("a", [{"acc": 0.5}]), ("b", [{"acc": 0.7}, {"acc": 0.9}])], [Column("acc", "Acc")])
>>> print(to_markdown(t))
| Model | Acc |
|:--|--:|
| a | 50.00 |
| b | **80.00 ± 14.14** |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

MISSING_MD, MISSING_TEX = "–", "--"


@dataclass(frozen=True)
class Column:
    key: str  # metric key looked up in each run's metrics dict
    header: str
    scale: float = 100.0  # fractions → percent
    digits: int = 2
    best: Optional[str] = "max"  # bold the max / min over rows, or None
    delta: bool = False  # render as ↑x / ↓x (a gain)
    group: Optional[str] = None  # LaTeX: a spanning header over adjacent columns of one group ...
    short: Optional[str] = None  # ... with this header under it (Markdown keeps ``header``)


@dataclass
class Cell:
    mean: Optional[float]
    sd: Optional[float] = None
    n: int = 0
    mark: str = ""  # a footnote marker after the number ("†": explained in the table's notes)


@dataclass
class Row:
    label: str
    cells: list[Cell]
    section: Optional[str] = None  # rows are grouped under section headings in order


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    row_header: str = "Model"
    caption: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def make_cell(values: Sequence[Any]) -> Cell:
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return Cell(None)
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return Cell(mean, sd, len(xs))


Runs = Sequence[Mapping[str, Any]]
RowSpec = Union[tuple[str, Runs], tuple[str, Runs, Optional[str]]]  # (label, runs[, section])


def build_table(
    rows: Sequence[RowSpec], columns: Sequence[Column], row_header: str = "Model", caption: Optional[str] = None
) -> Table:
    """``rows``: (label, runs) or (label, runs, section); each run a flat metrics dict."""
    out = []
    for r in rows:
        label, runs, section = (r[0], r[1], r[2] if len(r) > 2 else None)  # type: ignore[misc]
        out.append(Row(label, [make_cell([m.get(c.key) for m in runs]) for c in columns], section))
    return Table(list(columns), out, row_header, caption)


def _best(table: Table) -> list[Optional[float]]:
    best: list[Optional[float]] = []
    for j, col in enumerate(table.columns):
        vals = [r.cells[j].mean for r in table.rows if r.cells[j].mean is not None]
        if col.best is None or len(vals) < 2:
            best.append(None)
        else:
            best.append(max(vals) if col.best == "max" else min(vals))
    return best


def _num(col: Column, cell: Cell, tex: bool) -> str:
    if cell.mean is None:
        return MISSING_TEX if tex else MISSING_MD
    v = cell.mean * col.scale
    if col.delta:
        arrow = ("$\\uparrow$" if v >= 0 else "$\\downarrow$") if tex else ("↑" if v >= 0 else "↓")
        text = f"{arrow}{abs(v):.{col.digits}f}"
    else:
        text = f"{v:.{col.digits}f}"
    if cell.sd is not None:
        text += (" $\\pm$ " if tex else " ± ") + f"{cell.sd * col.scale:.{col.digits}f}"
    return text


def _cells(table: Table, row: Row, tex: bool) -> list[str]:
    best = _best(table)
    out = []
    for j, (col, cell) in enumerate(zip(table.columns, row.cells)):
        text = _num(col, cell, tex)
        if best[j] is not None and cell.mean is not None and math.isclose(cell.mean, best[j]):
            text = f"\\textbf{{{text}}}" if tex else f"**{text}**"
        out.append(text + (tex_escape(cell.mark) if tex else cell.mark))
    return out


def to_markdown(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"**{table.caption}**", ""]
    lines.append("| " + " | ".join([table.row_header] + [c.header for c in table.columns]) + " |")
    lines.append("|:--|" + "|".join("--:" for _ in table.columns) + "|")
    section = None
    for row in table.rows:
        if row.section and row.section != section:
            section = row.section
            lines.append(f"| *{section}* |" + "|".join(" " for _ in table.columns) + "|")
        lines.append("| " + " | ".join([row.label] + _cells(table, row, tex=False)) + " |")
    lines += [""] + [f"{n}" for n in table.notes] if table.notes else []
    return "\n".join(lines)


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "−": r"$-$",
    "<": r"$<$",
    ">": r"$>$",
}  # < > are ¡ ¿ in OT1 text


def tex_escape(text: str) -> str:
    r"""Escape LaTeX specials.

    >>> tex_escape("mm_rlhf 50% & more")
    'mm\\_rlhf 50\\% \\& more'
    """
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _tex_header(table: Table) -> list[str]:
    """The header row; with column groups, a row of spanning group names (\\cmidrule under each) first."""
    plain = [table.row_header] + [c.header for c in table.columns]
    if not any(c.group for c in table.columns):
        return [" & ".join(tex_escape(h) for h in plain) + " \\\\"]
    spans: list[tuple[Optional[str], int, int]] = []  # (group, first column, last column), 2-based as in \\cmidrule
    for j, c in enumerate(table.columns, start=2):
        if spans and c.group and spans[-1][0] == c.group:
            spans[-1] = (c.group, spans[-1][1], j)
        else:
            spans.append((c.group, j, j))
    top = [""] + [f"\\multicolumn{{{b - a + 1}}}{{c}}{{{tex_escape(g)}}}" if g else "" for g, a, b in spans]
    rules = " ".join(f"\\cmidrule(lr){{{a}-{b}}}" for g, a, b in spans if g)
    sub = [table.row_header] + [(c.short or c.header) if c.group else c.header for c in table.columns]
    return [" & ".join(top) + " \\\\", rules, " & ".join(tex_escape(h) for h in sub) + " \\\\"]


def to_latex(table: Table, label: Optional[str] = None) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    n = len(table.columns) + 1
    lines = ["\\begin{table}[t]", "\\centering"]
    if table.caption:
        lines.append(f"\\caption{{{tex_escape(table.caption)}}}")
    if label:
        lines.append(f"\\label{{{label}}}")
    lines += [f"\\begin{{tabular}}{{l{'r' * len(table.columns)}}}", "\\toprule", *_tex_header(table), "\\midrule"]
    section = None
    for i, row in enumerate(table.rows):
        if row.section and row.section != section:
            if section is not None:
                lines.append("\\midrule")
            section = row.section
            lines.append(f"\\multicolumn{{{n}}}{{l}}{{\\textit{{{tex_escape(section)}}}}} \\\\")
        lines.append(" & ".join([tex_escape(row.label)] + _cells(table, row, tex=True)) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    for note in table.notes:
        lines.append(f"\\par\\footnotesize {tex_escape(note)}")
    lines.append("\\end{table}")
    return "\n".join(lines)
