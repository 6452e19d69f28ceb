"""``format: pairs``: any table of a query, two responses and which is better."""

from __future__ import annotations

from typing import Any, Mapping

from egt.data.formats.base import DataFormat, RowRejected, column, nonempty, read_images
from egt.data.formats.r1_reward_rl import r1_reward_label


class Pairs(DataFormat):
    """A query, two responses and which is better: ``chosen`` / ``rejected`` columns, or ``response_1`` /
    ``response_2`` + ``label`` (1 or 2, or "1"/"2", or "<answer>2</answer>"). Images as PIL images,
    ``{"bytes", "path"}`` dicts, raw bytes, base64 / data URIs, or paths (relative ones under
    ``image_root``), one or a list; ``images`` is read before ``image``. The sample id comes from ``id``."""

    name = "pairs"
    id_column = "id"

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        return pair_fields(row, columns, image_root)


def pair_fields(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
    """One ``pairs`` row → schema fields (label 1 = response_1 is better). Raises RowRejected."""
    query = column(row, columns, "query")
    if not isinstance(query, str) or not query.strip():
        raise RowRejected("query", "empty response", "the query is empty")
    chosen, rejected = row.get(columns.get("chosen") or ""), row.get(columns.get("rejected") or "")
    if chosen is not None or rejected is not None:  # (a JSON-lines file gives absent keys as None)
        r1, r2, label = chosen, rejected, 1
    else:
        r1, r2 = column(row, columns, "response_1"), column(row, columns, "response_2")
        label = r1_reward_label(column(row, columns, "label"))
        if label is None:
            raise RowRejected("label", "label not derivable", f"got {column(row, columns, 'label')!r}")
    image = column(row, columns, "images", required=False)
    if image is None:
        image = column(row, columns, "image")
    return {
        "query": query,
        "response_1": nonempty(r1, "response_1"),
        "response_2": nonempty(r2, "response_2"),
        "label": label,
        "images": read_images(image, image_root),
    }
