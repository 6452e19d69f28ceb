"""The re-probing of the online curriculum (``curriculum.reprobe_every`` > 0; :mod:`egt.select.online`),
which the RL stage runs (egt.stages.rl).

:class:`OnlineOrder` answers the RL sampler's "which rows, in which order, in epoch e": epoch 0 is the
select stage's selection; a re-probe epoch probes the candidate rows with the current policy (the
probe stage's code, :func:`egt.probe.probe.probe_with`) and re-sorts, or re-selects, from the new
entropies. Every re-probe is part of the RL artifact's state, under ``<rl artifact>/reprobe/``:

- ``epoch_<e>/shards/*.parquet``: the re-probe's shards (a killed re-probe resumes from them);
- ``epoch_<e>.parquet``: the merged table (the probe stage's columns);
- ``epoch_<e>.json``: the ids of epochs e … in their order, and what changed (:func:`drift`).

A re-probe whose ``.json`` exists is never run again, so a run killed anywhere after it resumes with
the same order; a resumed run re-probes only epochs it had not reached.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from egt import distributed
from egt.select.curriculum import Curriculum
from egt.select.methods import Selection
from egt.select.online import Reprobe, drift, next_selection
from egt.select.scores import EntropyScore
from egt.utils.atomic import write_json_atomic, write_parquet_atomic
from egt.utils.logging import log_metrics

log = logging.getLogger(__name__)


def reprobe_settings(cfg: DictConfig) -> Reprobe | None:
    """The online curriculum's settings, None for the static curriculum (``curriculum.reprobe_every=0``)."""
    every = int(cfg.curriculum.get("reprobe_every") or 0)
    if every <= 0:
        return None
    return Reprobe(every, bool(cfg.selection.get("online")), cfg.selection.get("max_change"))


class OnlineOrder:
    """``order_for(epoch)`` of :class:`egt.select.online.OnlineCurriculumSampler`.

    ``ids``: the RL data set's ids (row i = ids[i]; the selected samples, or the whole probed pool under
    online selection); ``first``: epoch 0's ids in order (the select stage's selection); ``first_scores``:
    the SFT probe's scores by id (for the rank correlation with the first ranking). Set :attr:`model`
    (the policy) and :attr:`logger` before training starts.
    """

    def __init__(
        self,
        cfg: DictConfig,
        out: Path,
        ds: Any,
        processor: Any,
        reprobe: Reprobe,
        first: list[str],
        first_scores: dict[str, float],
        score: EntropyScore,
        curriculum: Curriculum,
        method: Selection | None,
    ):
        self.cfg, self.dir, self.ds, self.processor, self.reprobe = cfg, Path(out) / "reprobe", ds, processor, reprobe
        self.ids = [str(i) for i in ds["id"]]
        self.row = {i: k for k, i in enumerate(self.ids)}
        self.first, self.first_scores = [str(i) for i in first], first_scores
        self.score, self.curriculum, self.method = score, curriculum, method
        self.model: Any = None
        self.logger: Any = None
        self.step = lambda: 0  # the RL step to log re-probe metrics at
        self.engine: Any = lambda: None  # the DeepSpeed engine under ZeRO-3 (RLModule.deepspeed_engine), else None
        self.generation: dict[int, Any] = {}  # epoch → egt.distributed.GenerationPath of its re-probe
        self.records: dict[int, dict[str, Any]] = {}

    def __call__(self, epoch: int) -> list[int]:
        return [self.row[i] for i in self.selection(self.reprobe.source_epoch(epoch))]

    def selection(self, epoch: int) -> list[str]:
        """The ids of epoch ``epoch`` (a re-probe epoch, or 0) in order: read back, or re-probed now."""
        if epoch == 0:
            return self.first
        done = self.dir / f"epoch_{epoch}.json"
        if done.is_file():
            record = json.loads(done.read_text())
            self.records[epoch] = record
            return record["ids"]
        prev_epoch = self.reprobe.source_epoch(epoch - 1)
        if prev_epoch and not (self.dir / f"epoch_{prev_epoch}.json").is_file():
            raise RuntimeError(
                f"{self.dir}: the re-probe of epoch {prev_epoch} is missing, so epoch {epoch}'s order "
                "cannot be rebuilt; delete the RL artifact directory to start RL again"
            )
        previous = self.selection(prev_epoch)
        t0 = time.perf_counter()
        table = self._table(epoch)
        seconds = time.perf_counter() - t0
        ids = next_selection(
            table,
            previous,
            self.score,
            self.curriculum,
            self.reprobe,
            self.method,
            seed=int(self.cfg.selection.seed),
            curriculum_seed=int(self.cfg.curriculum.seed),
        )
        stats = drift(table, self.score, self._scores(prev_epoch), self.first_scores, previous, ids)
        record = {"epoch": epoch, "ids": ids, "seconds": round(seconds, 2), "stats": stats}
        path = self.generation.get(epoch)
        if path is not None:  # a re-probe run now (not one read back from its parquet)
            record |= {"generation_path": path.name} | ({"gather_s": round(path.gather_s, 3)} if path.gather_s else {})
        if distributed.rank() == 0:
            write_json_atomic(done, record)
            log_metrics(
                self.logger,
                {
                    "reprobe/seconds": seconds,
                    **({"reprobe/gather_s": record["gather_s"]} if "gather_s" in record else {}),
                    **{f"reprobe/{k}": v for k, v in stats.items() if isinstance(v, (int, float))},
                },
                step=self.step(),
            )
        log.info(
            "[rl] re-probe before epoch %d: %.1f s; %s",
            epoch,
            seconds,
            ", ".join(f"{k} {v}" for k, v in stats.items() if k in SHOWN),
        )
        self.records[epoch] = record
        return ids

    def _table(self, epoch: int) -> pd.DataFrame:
        path = self.dir / f"epoch_{epoch}.parquet"
        if path.is_file():
            return pd.read_parquet(path)
        from egt.probe.probe import probe_with

        if self.model is None:
            raise RuntimeError("OnlineOrder.model is not set: the RL stage sets it to the policy before training")
        log.info("[rl] re-probing %d samples with the policy before epoch %d", len(self.ids), epoch)
        gather = bool(self.cfg.rl.get("gather_for_generation", True))
        with distributed.gathered_for_generation(self.model, gather, self.engine()) as generation:
            table = probe_with(
                self.cfg, self.model, self.processor, self.ds, self.dir / f"epoch_{epoch}", desc=f"re-probe {epoch}"
            )
        self.generation[epoch] = generation
        if generation.name != "plain":
            log.info(
                "[rl] re-probe %d generated on the %s path (gather %.2f s)", epoch, generation.name, generation.gather_s
            )
        if distributed.rank() == 0:
            write_parquet_atomic(table, path)
        return table

    def _scores(self, epoch: int) -> dict[str, float]:
        if epoch == 0:
            return self.first_scores
        table = pd.read_parquet(self.dir / f"epoch_{epoch}.parquet")
        return dict(zip(table["id"].astype(str), self.score(table).tolist()))

    def summary(self) -> list[dict[str, Any]]:
        """One entry per re-probe this run knows of: epoch, seconds, what changed (and, for re-probes run since
        ``rl.gather_for_generation`` existed, the generation path and gather seconds)."""
        keep = ("generation_path", "gather_s")
        return [
            {"epoch": e, "seconds": r["seconds"], **r["stats"], **{k: r[k] for k in keep if k in r}}
            for e, r in sorted(self.records.items())
        ]


SHOWN = (
    "score_mean",
    "spearman_previous",
    "spearman_first",
    "moved",
    "overlap_previous",
    "entered",
    "left",
    "flipped_kept",
    "ambiguous_kept",
)
