"""What the two training stages (sft, rl) do with the model they trained: save it as an HF model
directory, atomically, and measure the reloaded model on a slice of the bench split.

One place for both (they were near copies); each stage passes its own config section's settings, and the
data stage's result (its ``dataset_path``), not the stage: nothing here imports egt.stages.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from egt import distributed
from egt.data.encode import ChatEncoder
from egt.eval.generation import generate, score
from egt.models.resolve import load_for_inference
from egt.utils.atomic import atomic_path, load_saved_dataset, write_json_atomic
from egt.utils.logging import log_metrics

log = logging.getLogger(__name__)
__all__ = ["save_model", "bench_eval"]


def save_model(out: Path, model: Any, processor: Any, state: dict | None = None, card: dict | None = None) -> Path:
    """``<out>/model``: ``model.save_pretrained`` (from ``state`` when ZeRO-3 gathered one), the processor,
    and the judge card ``card`` (``egt_judge.json``, :mod:`egt.judge.card`) with its model card
    (``README.md``, :mod:`egt.judge.model_card`), written to a per-process temporary directory and renamed
    into place whole."""
    with atomic_path(out / "model") as tmp:
        model.save_pretrained(tmp, state_dict=state)
        processor.save_pretrained(tmp)
        if card is not None:
            from egt.judge.card import write_card
            from egt.judge.model_card import write_model_card

            write_card(tmp, card)
            write_model_card(tmp)
    return out / "model"


def bench_eval(
    cfg: DictConfig, section: str, path: Path, data: dict, logger: Any, step: int, name: str | None = None
) -> dict[str, Any]:
    """Greedy judgements of the first ``cfg.<section>.eval_n`` bench samples (of ``data``, the data stage's result)
    by the model saved at ``path`` (``<section>.eval_max_new_tokens`` / ``eval_batch_size`` / ``max_length``);
    writes ``bench_eval.json`` beside it (metrics and 20 examples), logs ``<name>_bench/*`` at ``step`` (``name``:
    the stage, default ``section``; the rft stage trains with the sft section), and
    returns ``bench_*`` summary keys plus ``headline`` = bench accuracy (a fraction). An empty bench split
    (``data=r1_reward_rl`` has none) gives no check and no headline, never an accuracy of 0 items."""
    s, stage = cfg[section], name or section
    bench = load_saved_dataset(data["dataset_path"])["bench"]  # the data stage's data set
    if len(bench) == 0:
        log.warning(
            "[%s] the data set has no bench split (data=%s): no bench check after %s (%s.eval_n=%d); "
            "evaluate on the real benchmarks with the eval stage (docs/evaluation.md)",
            stage,
            cfg.data.name,
            stage.upper(),
            section,
            s.eval_n,
        )
        return {}
    samples = list(bench.select(range(min(s.eval_n, len(bench)))))
    model, processor = load_for_inference(path, cfg)
    model = model.to(distributed.device(cfg))
    encoder = ChatEncoder(
        processor, template=cfg.data.template, max_length=s.max_length, length_key=f"{section}.max_length"
    )
    outputs = generate(model, encoder, samples, s.eval_max_new_tokens, s.eval_batch_size, desc=f"{stage} bench")
    metrics = score(samples, outputs)
    write_json_atomic(
        path.parent / "bench_eval.json",
        {
            "metrics": metrics,
            "examples": [
                {"id": x["id"], "label": x["label"], "output": o} for x, o in list(zip(samples, outputs))[:20]
            ],
        },
    )
    log_metrics(logger, {f"{stage}_bench/{k}": v for k, v in metrics.items()}, step=step)
    log.info("[%s] bench after %s: %s", stage, stage.upper(), metrics)
    return {f"bench_{k}": v for k, v in metrics.items()} | {"headline": metrics["accuracy"]}
