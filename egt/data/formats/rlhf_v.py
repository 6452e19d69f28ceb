"""``format: rlhf_v``: openbmb/RLHF-V-Dataset (:class:`RLHFV`)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from egt.data.formats.base import DEFAULT_COLUMNS, DataFormat, RowRejected
from egt.data.formats.pairs import pair_fields


class RLHFV(DataFormat):
    """openbmb/RLHF-V-Dataset: ``text`` is a JSON string {question, chosen, rejected}; image (Image)."""

    name = "rlhf_v"
    release_id = "idx"  # the release's own row id: kept as meta.source_id, never the sample id

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        try:
            text = json.loads(row["text"]) if isinstance(row["text"], str) else row["text"]
            fields = {"query": text["question"], "chosen": text["chosen"], "rejected": text["rejected"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise RowRejected(
                "text", "missing column", f"not a JSON object with question/chosen/rejected ({exc})"
            ) from None
        return pair_fields({**fields, "image": row.get("image")}, DEFAULT_COLUMNS, image_root)
