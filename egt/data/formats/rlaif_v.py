"""``format: rlaif_v``: openbmb/RLAIF-V-Dataset (:class:`RLAIFV`)."""

from __future__ import annotations

from typing import Any, Mapping

from egt.data.formats.base import DataFormat
from egt.data.formats.pairs import pair_fields


class RLAIFV(DataFormat):
    """openbmb/RLAIF-V-Dataset: question, chosen, rejected, image (Image feature; {bytes, path} in the parquet)."""

    name = "rlaif_v"
    release_id = "idx"  # the release's own row id: kept as meta.source_id, never the sample id

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        return pair_fields(row, {**columns, "query": "question"}, image_root)
