"""``format: wildvision_battle``: WildVision arena battles (:class:`WildVisionBattle`)."""

from __future__ import annotations

from typing import Any, Mapping

from egt.data.formats.base import DEFAULT_COLUMNS, DataFormat, RowRejected, turn_text
from egt.data.formats.pairs import pair_fields


class WildVisionBattle(DataFormat):
    """WildVision arena battles: conversation_a / conversation_b ([{role, content}]), winner in model_a |
    model_b | tie | "tie (bothbad)" (ties and both-bad are dropped, counted under "tie"), image (Image);
    battles of more than one turn (``turn``, else the user turns of conversation_a) are dropped
    ("multi-turn")."""

    name = "wildvision_battle"
    release_id = "question_id"  # the release's own row id: kept as meta.source_id, never the sample id

    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        winner = str(row.get("winner") or "")
        if winner.startswith("tie"):
            raise RowRejected("winner", "tie", winner)
        if winner not in ("model_a", "model_b"):
            raise RowRejected("winner", "label not derivable", f"got {winner!r}")
        turns = row.get("turn") or sum(t.get("role") == "user" for t in row.get("conversation_a") or []) or 1
        if int(turns) > 1:
            raise RowRejected("conversation_a", "multi-turn", f"{turns} turns")
        a, b = row.get("conversation_a"), row.get("conversation_b")
        return pair_fields(
            {
                "query": turn_text(a, ("user",), "conversation_a"),
                "response_1": turn_text(a, ("assistant",), "conversation_a"),
                "response_2": turn_text(b, ("assistant",), "conversation_b"),
                "label": 1 if winner == "model_a" else 2,
                "image": row.get("image"),
            },
            {**DEFAULT_COLUMNS, "chosen": None, "rejected": None},
            image_root,
        )
