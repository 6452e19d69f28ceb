"""Lightning checkpoints that are never seen half-written.

One process or DDP: :class:`AtomicCheckpointIO` writes ``last.ckpt`` (a file) beside itself and renames it.

DeepSpeed writes its own checkpoint (``strategy.save_checkpoint`` ignores a ``CheckpointIO``): a directory
in which every rank writes its shard of the weights and optimizer state with ``torch.save``, and rank 0 the
``latest`` tag and the client state (Lightning's loops, egt's sampler and counters). Saved again into the
same ``last.ckpt``, it overwrites those files in place, one rank at a time: a kill in that window (a
pre-empted node, 15 GB per rank at 7B) leaves some ranks' files from the new step and some from the old,
which DeepSpeed loads without complaint — a silently inconsistent resume. :func:`atomic_deepspeed_saves`
makes every rank write into ``last.ckpt.partial-<token>`` (a name per save) and fsync its files; once all
have (a barrier), rank 0 publishes it: ``last.ckpt`` → ``last.ckpt.previous``, the partial → ``last.ckpt``,
the previous one removed. :func:`recover_checkpoint`, before a fit resumes, finishes or undoes what a kill
left: a partial save is discarded, and a kill between the two renames puts the previous checkpoint back.
Every path is on one file system (the artifact directory, which egt already requires to be shared by all
nodes), where ``os.replace`` is atomic.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from egt import distributed
from egt.errors import ConfigError
from egt.utils.atomic import atomic_path, fsync_path, remove_path

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temp file beside the target, then rename: a kill mid-save leaves the previous
    checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(Path(path)) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def partial_path(path: Path, token: str) -> Path:
    """Where every rank writes one DeepSpeed save before it is published as ``path``: a name of its own per
    save (``token``, chosen by rank 0), so a node whose file system caches names (NFS) cannot write the next
    save into the directory the last one was renamed to."""
    return path.with_name(f"{path.name}.partial-{token}")


def partial_paths(path: Path) -> list[Path]:
    """Every partial save of ``path`` on disk (what killed saves left)."""
    return sorted(path.parent.glob(f"{path.name}.partial-*"))


def previous_path(path: Path) -> Path:
    """Where the checkpoint being replaced waits while the new one is renamed into place."""
    return path.with_name(path.name + ".previous")


def _fsync_files(path: Path) -> None:
    """fsync every file under ``path`` (a rank's own shards reach the disk before rank 0 publishes them; a
    file this rank did not write has nothing to flush here)."""
    for f in sorted(path.rglob("*")):
        if f.is_file() and not f.is_symlink():
            fsync_path(f)


def _fsync_dir(path: Path) -> None:
    """fsync a directory (its renames reach the disk); best effort: some file systems (FUSE mounts) refuse
    it, and the rename itself is already atomic."""
    try:
        fsync_path(path)
    except OSError as exc:
        log.debug("[checkpoint] fsync of the directory %s: %s", path, exc)


def publish_checkpoint(path: Path, partial: Path) -> None:
    """Rename a complete ``partial`` onto ``path`` (rank 0, after every rank has written): the old
    checkpoint is moved aside first and removed last, so at every instant either ``path`` or
    ``previous_path(path)`` is a whole checkpoint."""
    previous = previous_path(path)
    remove_path(previous, ignore_errors=False)  # left by a publish killed after its second rename
    if path.exists():
        os.replace(path, previous)
    os.replace(partial, path)
    _fsync_dir(path.parent)
    remove_path(previous, ignore_errors=False)


def recover_checkpoint(path: Path) -> None:
    """Before a fit looks for ``path``: undo what a killed DeepSpeed save left (rank 0 acts, every rank
    waits for it). A ``.partial-*`` is a save that did not finish: removed. ``path`` missing but
    ``.previous`` present: the kill fell between :func:`publish_checkpoint`'s two renames, so the previous
    checkpoint is put back (the newer one is discarded with the partial: one checkpoint interval redone,
    never a mixed one). A checkpoint written by one process (a file) has neither and is left as it is."""
    path = Path(path)
    if distributed.is_main():
        previous = previous_path(path)
        if not path.exists() and previous.exists():
            os.replace(previous, path)
            log.warning("[checkpoint] a save was killed while it replaced %s: the previous checkpoint is back", path)
        for partial in partial_paths(path):
            log.warning("[checkpoint] a save was killed while it wrote %s: removed (the last whole one stays)", partial)
            remove_path(partial, ignore_errors=False)
        remove_path(previous, ignore_errors=False)
    distributed.barrier()


# DeepSpeed's checkpoint engines that write after save_checkpoint returns (a background process, or
# DataStates' asynchronous flush): a directory egt renamed at that moment would not be whole
_ASYNC_ENGINES = ("DecoupledCheckpointEngine", "DataStatesCheckpointEngine")


def atomic_deepspeed_saves(strategy: Any) -> Any:
    """Make ``strategy.save_checkpoint`` (Lightning's DeepSpeed strategy: every rank calls it with the same
    path) write the checkpoint whole or not at all (module docstring): every rank saves into a partial
    directory named for this save (rank 0's token, broadcast with the path) and fsyncs what it wrote; after
    a barrier rank 0 renames it onto ``path``; a second barrier keeps any rank from going on (and starting
    the next save) before that is done. DeepSpeed's asynchronous checkpoint engines (``checkpoint.writer.
    decoupled``, DataStates) are refused: their files are written after the save returns. Returns the
    strategy."""
    inner = strategy.save_checkpoint

    def save_checkpoint(checkpoint: dict, filepath: Any, storage_options: Any = None) -> None:
        engine = type(getattr(strategy.deepspeed_engine, "checkpoint_engine", None)).__name__
        if engine in _ASYNC_ENGINES:
            raise ConfigError(
                f"DeepSpeed's {engine} writes a checkpoint after save_checkpoint returns, and egt publishes it "
                "(renames it into place) then: remove checkpoint.writer.decoupled / datastates from the "
                "trainer.strategy config"
            )
        target, token = strategy.broadcast((str(filepath), uuid.uuid4().hex[:8]))  # rank 0's
        path = Path(target)
        partial = partial_path(path, token)
        inner(checkpoint, partial, storage_options)
        _fsync_files(partial)
        strategy.barrier("egt.checkpoint.written")
        if strategy.is_global_zero:
            publish_checkpoint(path, partial)
        strategy.barrier("egt.checkpoint.published")

    strategy.save_checkpoint = save_checkpoint
    return strategy
