"""``python -m egt.judge rank``: best-of-N for each prompt of a candidates file by pairwise judgements.

Input (JSON lines, one prompt a line): ``id``, ``images`` (paths, relative to the file's folder, or one
``image``), ``question`` (or ``query``) and ``candidates`` (or ``responses``: two or more strings). Output, one
line per prompt in input order: ``best`` (index), ``best_response``, ``tied_best``, ``scores``, ``calls`` (judge
calls made) with ``calls_stated`` (what the scheme costs: :meth:`Tournament.calls`), ``ties``,
``position_disagreements``, ``unparsed`` and every match. Each finished prompt is appended to a journal
(``<out>.journal.jsonl``, :class:`egt.utils.io.Journal`) before the next starts, so a killed run resumes where
it stopped; the journal's first record holds the run's settings, and a resume with other settings is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from egt.data.schema import BadSampleError
from egt.judge.tournament import SCHEMES, Match, Tournament, match_from
from egt.utils.atomic import write_text_atomic
from egt.utils.io import Journal

log = logging.getLogger(__name__)
__all__ = ["read_candidates", "rank_prompt", "rank_file"]


def read_candidates(path: str | Path, on_bad_sample: str = "error") -> tuple[list[dict[str, Any]], list[dict]]:
    """(prompts, skipped rows) of a candidates file; a bad row raises ValueError naming the file, row and field,
    or with ``on_bad_sample="skip"`` is returned among the skipped (``{"row", "id", "skipped"}``)."""
    path = Path(path)
    prompts, skipped, seen = [], [], set()
    for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompts.append(_prompt(path, row, line, seen))
        except ValueError as exc:
            if on_bad_sample == "error":
                raise
            skipped.append({"row": row, "skipped": str(exc)})
    return prompts, skipped


def _prompt(path: Path, row: int, line: str, seen: set) -> dict[str, Any]:
    def bad(field: str, why: str) -> ValueError:
        return ValueError(f"{path}, row {row}: field {field!r}: {why}")

    try:
        r = json.loads(line)
    except json.JSONDecodeError as exc:
        raise bad("<line>", f"not JSON ({exc})") from None
    pid = str(r.get("id", row))
    if pid in seen:
        raise bad("id", f"{pid!r} repeats an earlier row's id")
    seen.add(pid)
    cands = r.get("candidates", r.get("responses"))
    if not isinstance(cands, list) or len(cands) < 2:
        raise bad("candidates", "must be a list of at least two responses")
    for k, c in enumerate(cands):
        if not isinstance(c, str) or not c.strip():
            raise bad("candidates", f"candidate {k} is empty or not a string")
    question = r.get("question", r.get("query"))
    if not isinstance(question, str) or not question.strip():
        raise bad("question", "empty or missing")
    images = r.get("images", [r["image"]] if r.get("image") is not None else None)
    if not images:
        raise bad("images", "missing: the judge needs at least one image")
    images = [str(path.parent / i) if isinstance(i, str) and not Path(i).is_absolute() else i for i in images]
    return {"id": pid, "images": images, "question": question, "candidates": cands}


def rank_prompt(judge: Any, prompt: Mapping[str, Any], scheme: Tournament) -> dict[str, Any]:
    """One prompt's result (see the module docstring); ``judge`` has :meth:`egt.judge.Judge.compare_many`.
    Each round of the tournament is one batched ``compare_many(…, order="both")`` call."""
    calls = 0

    def play(pairs: Sequence[tuple[int, int]]) -> list[Match]:
        nonlocal calls
        items = [
            {
                "id": f"{prompt['id']}:{a}-{b}",
                "images": prompt["images"],
                "question": prompt["question"],
                "response_1": prompt["candidates"][a],
                "response_2": prompt["candidates"][b],
            }
            for a, b in pairs
        ]
        verdicts = judge.compare_many(items, order="both", on_bad_sample="skip") if items else []
        calls += 2 * sum(not v.skipped for v in verdicts)
        return [match_from(a, b, v) for (a, b), v in zip(pairs, verdicts)]

    n = len(prompt["candidates"])
    best, scores, matches = scheme.run(n, play)
    skipped = [m for m in matches if m.kind == "skipped"]
    if skipped and len(skipped) == len(matches):
        raise BadSampleError(prompt["id"], "images", "every match was skipped (unreadable image or prompt too long)")
    top = max(scores)
    return {
        "id": prompt["id"],
        "scheme": scheme.name,
        "n_candidates": n,
        "best": best,
        "best_response": prompt["candidates"][best],
        "tied_best": [c for c in range(n) if scores[c] == top] if scheme.name == "round_robin" else [best],
        "scores": scores,
        "calls": calls,
        "calls_stated": scheme.calls(n),
        "ties": sum(m.winner is None for m in matches),
        "position_disagreements": sum(m.kind == "position_disagreement" for m in matches),
        "unparsed": sum(m.kind == "unparsed" for m in matches),
        "skipped_matches": len(skipped),
        "matches": [m.to_dict() for m in matches],
    }


def rank_file(
    judge: Any,
    data: str | Path,
    out: str | Path,
    scheme: str = "knockout",
    settings: Mapping[str, Any] | None = None,
    on_bad_sample: str = "error",
) -> dict[str, Any]:
    """Rank every prompt of ``data`` into ``out`` (resumable; see the module docstring); returns the totals."""
    if scheme not in SCHEMES:
        raise ValueError(f"--scheme {scheme!r}: write one of {sorted(SCHEMES)}")
    tournament = SCHEMES[scheme]()
    out = Path(out)
    prompts, bad_rows = read_candidates(data, on_bad_sample)
    journal = Journal(out.with_name(out.name + ".journal.jsonl"))
    head = {"settings": {**dict(settings or {}), "scheme": scheme, "data": str(Path(data).resolve())}}
    done = journal.read()
    if done and done[0] != json.loads(json.dumps(head, sort_keys=True, default=str)):
        raise ValueError(
            f"{journal.path} was written with other settings {done[0].get('settings')}; this run: {head['settings']}. "
            "Delete it (or write --out elsewhere) to start over"
        )
    if not done:
        journal.append([head])
    results = {r["id"]: r for r in done[1:]}
    if results:
        log.info("rank: resuming, %d of %d prompts in %s", len(results), len(prompts), journal.path)
    for p in prompts:
        if p["id"] in results:
            continue
        try:
            r = rank_prompt(judge, p, tournament)
        except BadSampleError as exc:
            if on_bad_sample == "error":
                raise
            r = {"id": p["id"], "skipped": str(exc)}
        journal.append([r])
        results[p["id"]] = r
    lines = [results[p["id"]] for p in prompts] + bad_rows
    write_text_atomic(out, "".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))
    ranked = [r for r in lines if "best" in r]
    return {
        "prompts": len(ranked),
        "skipped": len(lines) - len(ranked),
        "calls": sum(r["calls"] for r in ranked),
        "ties": sum(r["ties"] for r in ranked),
        "position_disagreements": sum(r["position_disagreements"] for r in ranked),
        "out": str(out),
    }
