"""SFT samples for the packing / loss tests (tests/unit/sft): five samples of the synthetic world, encoded by
egt's ChatEncoder, of growing lengths, images in samples 0, 2, 4 and none in 1, 3; on the tiny Qwen2.5-VL or
the Qwen2.5-VL-7B replica's layout (egt.models.replica)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_passes import build_replica  # noqa: F401  (re-exported: the SFT tests' replica)


def sft_examples(model_dir: str | Path, attn_implementation: str = "sdpa") -> tuple[Any, int, list[dict]]:
    """``(model, pad id, samples)``: the model at ``model_dir`` loaded with ``attn_implementation`` and five
    encoded samples (``ChatEncoder.encode_example``; samples 1 and 3 text-only)."""
    from egt.data.encode import ChatEncoder
    from egt.data.world import make_world
    from egt.models.loader import load_model_and_processor

    model, proc = load_model_and_processor(model_dir, attn_implementation=attn_implementation)
    enc = ChatEncoder(proc)
    rows = list(make_world({"n_sft": 6, "n_rl": 2, "n_bench": 2})["sft_pool"].select(range(5)))
    exs = []
    for i, r in enumerate(rows):
        r = dict(r)
        if i in (1, 3):  # text-only samples between image ones
            r["images"] = []
        exs.append(enc.encode_example(r, "<think>" + "a b " * (4 * i + 1) + "</think><answer>1</answer>"))
    return model, proc.tokenizer.pad_token_id, exs
