"""``format: vlfeedback``: MMInstruction/VLFeedback (:class:`VLFeedback`)."""

from __future__ import annotations

from typing import Any, Mapping

from egt.data.formats.base import DEFAULT_COLUMNS, DataFormat, RowRejected
from egt.data.formats.pairs import pair_fields


class VLFeedback(DataFormat):
    """MMInstruction/VLFeedback: ``completions`` (a list of {model, response, annotations}; the loading
    script's Sequence of dicts gives the same as a dict of lists), each annotated with Helpfulness, Ethical
    Considerations and Visual Faithfulness ratings. The image: ``img_path`` where the loading script set it,
    else ``<id>.jpg`` under image_root (the released vlfeedback_80k.jsonl has no image column; its images
    are merged_images/<id>.jpg in merged_images.zip). A completion's score is the mean of its three ratings
    (as the authors' run_dpo.py; a completion with a rating that is not a number is left out).
    ``pair_rule``: best_worst = the highest against the lowest score (one pair per prompt; none if they tie)."""

    name = "vlfeedback"
    release_id = "id"  # the release's own row id: kept as meta.source_id, never the sample id

    def __init__(self, pair_rule: str = "best_worst") -> None:
        if pair_rule != "best_worst":
            raise ValueError(f"vlfeedback pair_rule={pair_rule!r}: only best_worst is implemented")
        self.pair_rule = pair_rule

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        for column in ("prompt", "completions"):  # a file without the column: say so, never "empty response"
            if column not in row:  # or an exclusion ("no rated pair")
                raise RowRejected(column, "missing column", f"no column {column!r}")
        comps = row.get("completions")
        if isinstance(comps, Mapping):  # the loading script's Sequence of dicts: a dict of lists
            comps = [dict(zip(comps, vals)) for vals in zip(*comps.values())]
        scored = []
        for c in comps or []:
            ratings = [_rating(a) for a in (c.get("annotations") or {}).values()]
            if ratings and all(r is not None for r in ratings):
                scored.append((sum(ratings) / len(ratings), str(c.get("response") or "")))
        scored.sort(key=lambda s: s[0])
        if len(scored) < 2 or scored[0][0] == scored[-1][0]:
            raise RowRejected(
                "completions", "no rated pair", f"{len(scored)} completions with numeric ratings, no better one"
            )
        image = row.get("img_path") or row.get("image") or (f"{row['id']}.jpg" if row.get("id") else None)
        return pair_fields(
            {"query": row.get("prompt"), "chosen": scored[-1][1], "rejected": scored[0][1], "image": image},
            DEFAULT_COLUMNS,
            image_root,
        )


def _rating(annotation: Any) -> float | None:
    try:
        return float(annotation["Rating"])
    except (KeyError, TypeError, ValueError):
        return None
