import json
import threading
import time

import pytest

from egt.artifacts import SUCCESS, ArtifactStore, is_done, make_key
from egt.utils.atomic import write_json_atomic


def test_same_config_same_key_and_key_order_irrelevant():
    a = make_key("sft", {"lr": 1e-3, "batch": 8}, {"data": "abc"})
    b = make_key("sft", {"batch": 8, "lr": 0.001}, {"data": "abc"})
    assert a == b and len(a) == 12


@pytest.mark.parametrize(
    "change", [dict(stage="rl"), dict(config={"lr": 2e-3, "batch": 8}), dict(upstream={"data": "abd"}), dict(version=2)]
)
def test_relevant_change_gives_new_key(change):
    base = dict(stage="sft", config={"lr": 1e-3, "batch": 8}, upstream={"data": "abc"}, version=1)
    assert make_key(**base) != make_key(**{**base, **change})


def test_unfinished_artifact_is_not_reused(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError, match="without finishing"):
        with store.open("sft", "k1") as art:
            (art.path / "half.bin").write_bytes(b"x")  # killed before finish()
    assert not is_done(store.path("sft", "k1"))
    with store.open("sft", "k1") as art:
        assert not art.reused
        assert (art.path / "half.bin").exists()  # the work dir survives for resumption
        art.finish({"loss": 1.0})
    with store.open("sft", "k1") as art:
        assert art.reused and art.summary == {"loss": 1.0}


def test_finish_drops_what_only_a_killed_attempt_needed_after_the_marker(tmp_path, monkeypatch):
    """A training stage's ``checkpoints/`` goes once the artifact is finished, not before: a kill before
    the success marker keeps the resume state of an unfinished artifact."""
    import egt.artifacts as artifacts

    store = ArtifactStore(tmp_path)
    order = []
    write = artifacts.write_json_atomic
    monkeypatch.setattr(artifacts, "write_json_atomic", lambda path, obj: (order.append("marker"), write(path, obj)))
    with store.open("rl", "k1") as art:
        (art.path / "checkpoints" / "last.ckpt" / "checkpoint").mkdir(parents=True)
        (art.path / "checkpoints" / "last.ckpt" / "checkpoint" / "shard.pt").write_bytes(b"x" * 10)
        (art.path / "model").mkdir()
        real_rmtree = artifacts.shutil.rmtree
        monkeypatch.setattr(artifacts.shutil, "rmtree", lambda p, **kw: (order.append(p.name), real_rmtree(p, **kw)))
        art.finish({"steps": 2}, drop=("checkpoints", "not_there"))
    assert order == ["marker", "checkpoints"]
    assert sorted(p.name for p in store.path("rl", "k1").iterdir()) == ["_SUCCESS.json", "model"]
    with store.open("rl", "k1") as art:
        assert art.reused and art.summary == {"steps": 2}


def test_a_drop_that_fails_leaves_the_artifact_finished(tmp_path, monkeypatch, caplog):
    import egt.artifacts as artifacts

    store = ArtifactStore(tmp_path)

    def refuse(path, **kw):
        raise OSError(39, "Directory not empty", str(path))  # NFS's .nfsXXXX of a file still open elsewhere

    with store.open("sft", "k1") as art:
        (art.path / "checkpoints").mkdir()
        (art.path / "checkpoints" / "last.ckpt").write_bytes(b"x")
        monkeypatch.setattr(artifacts.shutil, "rmtree", refuse)
        art.finish({"steps": 2}, drop=("checkpoints",))
    assert is_done(store.path("sft", "k1")) and "could not remove" in caplog.text


def test_success_marker_is_last_and_whole(tmp_path):
    store = ArtifactStore(tmp_path)
    with store.open("data", "k") as art:
        art.finish({"n": 3})
    record = json.loads((store.path("data", "k") / SUCCESS).read_text())
    assert record["summary"] == {"n": 3} and record["key"] == "k"
    assert not list(store.path("data", "k").glob(".*.tmp"))


def test_write_json_atomic_replaces(tmp_path):
    p = tmp_path / "a.json"
    write_json_atomic(p, {"v": 1})
    write_json_atomic(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 2}


def test_concurrent_jobs_compute_once(tmp_path):
    computed = []

    def job():
        store = ArtifactStore(tmp_path)
        with store.open("probe", "same") as art:
            if not art.reused:
                time.sleep(0.2)
                computed.append(1)
                art.finish({})

    threads = [threading.Thread(target=job) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert computed == [1]


def test_outside_inputs_are_keyed_by_content(tmp_path):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401
    from egt.artifacts import content_fingerprint
    from egt.stages import distill, sft

    a, b = tmp_path / "a", tmp_path / "b"
    for d, text in ((a, "one"), (b, "two")):
        d.mkdir()
        (d / "data-00000-of-00001.arrow").write_text(text * 1000)
    assert content_fingerprint(a) != content_fingerprint(b) and content_fingerprint(a) == content_fingerprint(a)
    assert content_fingerprint(tmp_path / "none").startswith("missing:")
    conf = Path(__file__).resolve().parents[2] / "conf"

    def keys(*overrides):
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
        return cfg

    ka = distill.run(keys(f"distill.trajectories_path={a}"), None)["key"]
    kb = distill.run(keys(f"distill.trajectories_path={b}"), None)["key"]
    assert ka != kb and ka.startswith("external-")  # two trajectory files never share one SFT artifact
    (a / "data-00000-of-00001.arrow").write_text("ONE" * 1000)  # rewritten in place
    assert distill.run(keys(f"distill.trajectories_path={a}"), None)["key"] != ka
    assert sft.run(keys(f"sft.model_path={a}"), None)["key"] != sft.run(keys(f"sft.model_path={b}"), None)["key"]


def test_finish_removes_temporaries_of_killed_attempts(tmp_path):
    import os
    import subprocess
    import sys
    import time as _time

    from egt.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with store.open("probe", "k1") as art:
            d = art.path
            (d / "shards").mkdir()
            (d / "shards" / ".shard-0-16.parquet.tmp-999999").write_text("torn")  # a killed process's
            (d / f".model.tmp-{os.getpid()}").mkdir()  # this process's own leftover
            (d / f".model.tmp-{os.getpid()}" / "w.bin").write_text("x")
            (d / f".journal.tmp-{live.pid}").write_text("in flight")  # a live process's: kept
            old = d / ".metrics.json.ab12cd34.tmp"
            old.write_text("{")
            os.utime(old, (_time.time() - 3600, _time.time() - 3600))
            (d / ".fresh.ef56ab78.tmp").write_text("{")  # too recent to be called torn
            (d / "shards" / "shard-0-16.parquet").write_text("done")
            art.finish({"n": 1})
        left = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
        assert left == [
            ".fresh.ef56ab78.tmp",
            f".journal.tmp-{live.pid}",
            "_SUCCESS.json",
            "shards",
            "shards/shard-0-16.parquet",
        ]
    finally:
        live.kill()
