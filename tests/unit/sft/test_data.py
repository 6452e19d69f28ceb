import pytest
from datasets import Dataset

from egt.sft.data import join_trajectories


def test_join_keeps_pool_order_and_names_strays():
    pool = Dataset.from_dict({"id": ["a", "b", "c", "d"], "query": ["qa", "qb", "qc", "qd"]})
    traj = Dataset.from_dict({"id": ["d", "b"], "target": ["td", "tb"]})
    joined = join_trajectories(pool, traj)
    assert joined[:] == {"id": ["b", "d"], "query": ["qb", "qd"], "target": ["tb", "td"]}
    other = join_trajectories(pool, Dataset.from_dict({"id": ["d", "b"], "target": ["TD", "TB"]}))
    assert other._fingerprint != joined._fingerprint and other["target"][:] == ["TB", "TD"]
    with pytest.raises(ValueError, match="1 trajectories name samples not in the pool"):
        join_trajectories(pool, Dataset.from_dict({"id": ["b", "z"], "target": ["tb", "tz"]}))
