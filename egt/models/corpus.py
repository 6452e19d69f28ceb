"""The text the tiny/demo model's tokenizer is trained on (``model.build.kind=world``).

It lives beside the builder, not in the data package: it needs both the synthetic world
(egt.data.world) and the synthetic teacher's outputs (egt.distill.synthetic), and distillation
already depends on data, so only a module downstream of both can hold it without a cycle.
Changing what it returns changes the tokenizer, so egt.stages.model's ``BUILD_VERSION`` must move
with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from egt.data.prompt import build_user_text
from egt.data.world import WorldConfig, as_world_config, make_record
from egt.distill.synthetic import SyntheticTeacher
from egt.distill.teacher import strip_label

__all__ = ["world_corpus"]


def world_corpus(cfg: WorldConfig | Mapping[str, Any] | None = None, n: int = 2000) -> list[str]:
    """Texts to train the tiny model's tokenizer on: prompts (both templates), queries, responses and
    synthetic-teacher outputs (both styles, with and without a verdict sentence, the latter describing
    the scene first), from a stream of the world of its own (split ``"corpus"``, ``n`` records).

    Deterministic: the same ``cfg`` and ``n`` give the same list in any process.
    """
    cfg = as_world_config(cfg)
    cfg.validate()
    recs = [make_record(cfg, "corpus", i) for i in range(n)]
    # r1_reward_legacy: the text this corpus was built with (a new template text would change the
    # tokenizer under the same model key)
    texts = [build_user_text("{query}", "{response_1}", "{response_2}", t) for t in ("short", "r1_reward_legacy")]
    for rec in recs:
        texts += [
            rec["query"],
            rec["response_1"],
            rec["response_2"],
            build_user_text(rec["query"], rec["response_1"], rec["response_2"]),
        ]
    public = [strip_label(r) for r in recs]
    for style in ("prose", "compact"):
        for verdict in (False, True):
            teacher = SyntheticTeacher(seed=cfg.seed, verdict_sentence=verdict, style=style, describe=verdict)
            texts += teacher.generate(public, attempt=0)
    texts += ["<think>", "</think>", "<answer>1</answer>", "<answer>2</answer>", " ".join("0123456789")]
    return texts
