"""The artifact store under two gloo processes: a rank-0 stage is computed once and read by the other
rank, an all-rank stage runs its body on both and reuses on both, and a rank-0 failure makes the other
rank fail with a clear message instead of hanging."""

from __future__ import annotations

import json

import torch.multiprocessing as mp

from dist_store_worker import store_worker


def test_rank_aware_store(tmp_path):
    init = f"file://{tmp_path / 'pg'}"
    mp.spawn(store_worker, args=(str(tmp_path / "art"), init, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["main1"] == [False, {"who": 0}, "built by 0"] and r1["main1"] == [True, {"who": 0}, "built by 0"]
    assert r0["main2"][0] is True and r1["main2"][0] is True
    assert r0["all1"] == r1["all1"] == [True, {"n": 7}]  # both trained; rank 1 gets rank 0's summary
    assert r0["all2"] == r1["all2"] == [False, {"n": 7}]  # both reuse
    assert r0["failure"] == "teacher down"
    assert "rank 0 did not finish distill" in r1["failure"]
    assert not (tmp_path / "art" / "distill" / "k3" / "_SUCCESS.json").exists()
