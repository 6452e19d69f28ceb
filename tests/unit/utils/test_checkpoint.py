"""egt.utils.checkpoint: a DeepSpeed checkpoint (a directory every rank writes into) is published whole or
not at all, and what a kill at each point of a save leaves resumes from a whole checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from egt.utils import checkpoint
from egt.errors import ConfigError
from egt.utils.checkpoint import (
    atomic_deepspeed_saves,
    partial_path,
    partial_paths,
    previous_path,
    publish_checkpoint,
    recover_checkpoint,
)


class Killed(BaseException):
    """What a SIGKILL mid-save does to the rest of the save (nothing after it runs)."""


class FakeDeepSpeed:
    """The part of Lightning's DeepSpeedStrategy a save uses, one process: ``save_checkpoint`` writes what
    DeepSpeed's ``engine.save_checkpoint`` does for 2 ranks (each rank's model and optimizer shard, then the
    ``latest`` tag), and dies after ``die_after`` files when set."""

    is_global_zero = True
    deepspeed_engine = None  # its checkpoint_engine: DeepSpeed's default, synchronous

    def __init__(self) -> None:
        self.die_after: int | None = None
        self.barriers: list[str] = []
        self.saved_into: list[Path] = []

    def broadcast(self, obj):
        return obj

    def barrier(self, name=None):
        self.barriers.append(name)

    def save_checkpoint(self, checkpoint, filepath, storage_options=None):
        step = checkpoint["global_step"]
        self.saved_into.append(Path(filepath))
        files = [
            f"checkpoint/zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")
        ]
        for i, name in enumerate([*files, "latest"]):
            if self.die_after is not None and i == self.die_after:
                raise Killed
            (Path(filepath) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(filepath) / name).write_text("checkpoint" if name == "latest" else f"step {step}")


def steps(path: Path) -> set[str]:
    """The steps the shards in a checkpoint directory come from: one for a whole checkpoint."""
    return {p.read_text() for p in (path / "checkpoint").iterdir()}


@pytest.fixture
def saved(tmp_path):
    """A strategy made atomic, and a whole checkpoint of step 3 published at ``last.ckpt``."""
    strategy = atomic_deepspeed_saves(FakeDeepSpeed())
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    strategy.save_checkpoint({"global_step": 3}, last)
    return strategy, last


def test_a_save_publishes_a_whole_directory_and_leaves_nothing_beside_it(saved):
    strategy, last = saved
    assert steps(last) == {"step 3"} and (last / "latest").read_text() == "checkpoint"
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
    strategy.save_checkpoint({"global_step": 6}, last)
    assert steps(last) == {"step 6"} and sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
    # every rank writes before rank 0 renames, and none starts the next save before it has
    assert strategy.barriers == ["egt.checkpoint.written", "egt.checkpoint.published"] * 2
    # each save into a directory of its own name, beside the target: a node caching the name of the last
    # one (NFS) cannot write into the checkpoint it became
    first, second = strategy.saved_into
    assert first != second and first.parent == second.parent == last.parent
    assert first.name.startswith("last.ckpt.partial-") and second.name.startswith("last.ckpt.partial-")


@pytest.mark.parametrize("die_after", [0, 1, 3, 4])
def test_a_save_killed_while_the_ranks_write_leaves_the_last_whole_checkpoint(saved, die_after):
    strategy, last = saved
    strategy.die_after = die_after
    with pytest.raises(Killed):
        strategy.save_checkpoint({"global_step": 6}, last)
    assert steps(last) == {"step 3"}  # untouched: the new shards went to the partial directory
    assert len(partial_paths(last)) == (die_after > 0)
    recover_checkpoint(last)
    assert steps(last) == {"step 3"} and sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_the_same_kill_without_the_atomic_save_mixes_two_steps(tmp_path):
    """Why: DeepSpeed's own save, into the same directory, overwrites one rank's files at a time."""
    strategy, last = FakeDeepSpeed(), tmp_path / "last.ckpt"
    strategy.save_checkpoint({"global_step": 3}, last)
    strategy.die_after = 2  # rank 0's shards written, rank 1's not
    with pytest.raises(Killed):
        strategy.save_checkpoint({"global_step": 6}, last)
    assert steps(last) == {"step 3", "step 6"}


def _publish_killed_after(last: Path, renames: int) -> None:
    """:func:`publish_checkpoint` of a whole step-6 ``.partial``, killed after its first ``renames`` renames."""
    partial = partial_path(last, "0a1b2c3d")
    for name in ("checkpoint/zero_pp_rank_0_mp_rank_00_model_states.pt", "latest"):
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        (partial / name).write_text("step 6" if name != "latest" else "checkpoint")
    real_replace, done = os.replace, []

    def replace(src, dst):
        if len(done) == renames:
            raise Killed
        done.append(dst)
        real_replace(src, dst)

    def fsync_dir(path):  # the step after both renames
        if len(done) == renames:
            raise Killed

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", replace)
        mp.setattr(checkpoint, "_fsync_dir", fsync_dir)
        with pytest.raises(Killed):
            publish_checkpoint(last, partial)


@pytest.mark.parametrize("renames,step", [(0, "step 3"), (1, "step 3"), (2, "step 6")])
def test_a_publish_killed_between_its_renames_resumes_from_a_whole_checkpoint(saved, renames, step):
    """Killed before the renames, between them (``last.ckpt`` gone, the old one at ``.previous``) or after
    both (the old one not yet removed): the resume finds one whole checkpoint at ``last.ckpt``."""
    _, last = saved
    _publish_killed_after(last, renames)
    assert last.exists() == (renames != 1)
    recover_checkpoint(last)
    assert steps(last) == {step} and sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_recover_leaves_a_one_process_checkpoint_and_an_empty_directory_alone(tmp_path):
    last = tmp_path / "last.ckpt"
    recover_checkpoint(last)  # no checkpoint yet: nothing to do
    assert not last.exists()
    last.write_bytes(b"a torch.save file")
    recover_checkpoint(last)
    assert last.read_bytes() == b"a torch.save file"
    assert not partial_paths(last) and not previous_path(last).exists()


def test_an_asynchronous_deepspeed_checkpoint_engine_is_refused(tmp_path):
    """DeepSpeed's decoupled writer (``checkpoint.writer.decoupled``) and DataStates write after the save
    returns: publishing the directory then would publish half of it."""

    class DecoupledCheckpointEngine:  # the name DeepSpeed's class has
        pass

    strategy = atomic_deepspeed_saves(FakeDeepSpeed())
    strategy.deepspeed_engine = type("Engine", (), {"checkpoint_engine": DecoupledCheckpointEngine()})()
    with pytest.raises(ConfigError, match="DecoupledCheckpointEngine writes a checkpoint after save_checkpoint"):
        strategy.save_checkpoint({"global_step": 3}, tmp_path / "last.ckpt")
    assert not list(tmp_path.iterdir())
