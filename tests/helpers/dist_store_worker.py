"""The worker of tests/unit/test_artifacts_distributed.py. It lives on the pytest ``pythonpath``
(tests/helpers) so that processes started by ``torch.multiprocessing.spawn`` can import it: the
test module itself is imported by file path and is not importable by name in a child."""

from __future__ import annotations

import json
from pathlib import Path

import torch.distributed as dist

from egt.artifacts import ArtifactStore


def store_worker(rank: int, root: str, init: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    store, seen = ArtifactStore(root), {}
    try:
        for attempt in (1, 2):
            with store.open("data", "k1") as art:  # rank 0 only
                if not art.reused:
                    (art.path / "x.txt").write_text("built by 0")
                    art.finish({"who": rank})
            seen[f"main{attempt}"] = [art.reused, art.summary, (art.path / "x.txt").read_text()]
            with store.open("sft", "k2", ranks="all") as art:  # every rank runs the body
                ran = not art.reused
                if ran:
                    art.finish({"n": 7})
            seen[f"all{attempt}"] = [ran, art.summary]
        try:
            with store.open("distill", "k3") as art:
                raise RuntimeError("teacher down")
        except RuntimeError as e:
            seen["failure"] = str(e)
    finally:
        Path(results, f"rank{rank}.json").write_text(json.dumps(seen))
        dist.destroy_process_group()
