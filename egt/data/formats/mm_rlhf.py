"""``format: mm_rlhf``: MM-RLHF's ranked pairs (:class:`MMRLHF`)."""

from __future__ import annotations

from typing import Any, Mapping

from egt.data.formats.base import DataFormat, RowRejected
from egt.data.formats.pairs import pair_fields


class MMRLHF(DataFormat):
    """MM-RLHF's ranked pairs (``dpo_pairs.jsonl``: prompt, chosen, rejected, and image, a path relative to
    the release's root such as "mcq/….png", or video, a folder of frames); video rows are dropped ("video
    only": egt's judges read images)."""

    name = "mm_rlhf"
    release_id = "id"  # the release's own row id: kept as meta.source_id, never the sample id

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        if not row.get("image") and row.get("video"):
            raise RowRejected("video", "video only", str(row.get("video")))
        return pair_fields(row, {**columns, "query": "prompt"}, image_root)
