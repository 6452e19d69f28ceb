"""``format: povid``: POVID (:class:`POVID`)."""

from __future__ import annotations

from typing import Any, Mapping

from egt.data.formats.base import DEFAULT_COLUMNS, DataFormat, turn_text
from egt.data.formats.pairs import pair_fields


class POVID(DataFormat):
    """POVID (a JSON list of LLaVA conversations): ``conversations`` [{from: human, value: "<image>\\n…"},
    {from: gpt, value: chosen}], ``rejected_conversations`` likewise with the rejected answer; ``image`` a
    COCO train2014 file name, joined to the image folder as POVID's train_dpo.py does (a path with the
    authors' folder prefix, "./data/coco/…", is also found by its file name under image_root)."""

    name = "povid"
    release_id = "id"  # the release's own row id: kept as meta.source_id, never the sample id

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        query = turn_text(row.get("conversations"), ("human", "user"), "conversations").replace("<image>", "").strip()
        chosen = turn_text(row.get("conversations"), ("gpt", "assistant"), "conversations")
        rejected = turn_text(row.get("rejected_conversations"), ("gpt", "assistant"), "rejected_conversations")
        return pair_fields(
            {"query": query, "chosen": chosen, "rejected": rejected, "image": row.get("image")},
            DEFAULT_COLUMNS,
            image_root,
        )
