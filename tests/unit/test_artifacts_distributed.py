"""The artifact store under two gloo processes: a rank-0 stage is computed once and read by the other
rank, an all-rank stage runs its body on both and reuses on both, and a rank-0 failure makes the other
rank fail with a clear message instead of hanging."""
from __future__ import annotations

import json
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from egt.artifacts import ArtifactStore


def _worker(rank: int, root: str, init: str, results: str) -> None:
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


def test_rank_aware_store(tmp_path):
    init = f"file://{tmp_path / 'pg'}"
    mp.spawn(_worker, args=(str(tmp_path / "art"), init, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["main1"] == [False, {"who": 0}, "built by 0"] and r1["main1"] == [True, {"who": 0}, "built by 0"]
    assert r0["main2"][0] is True and r1["main2"][0] is True
    assert r0["all1"] == r1["all1"] == [True, {"n": 7}]  # both trained; rank 1 gets rank 0's summary
    assert r0["all2"] == r1["all2"] == [False, {"n": 7}]  # both reuse
    assert r0["failure"] == "teacher down"
    assert "rank 0 did not finish distill" in r1["failure"]
    assert not (tmp_path / "art" / "distill" / "k3" / "_SUCCESS.json").exists()
