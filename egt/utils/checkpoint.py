"""Lightning checkpoints that are never seen half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from egt.utils.atomic import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temp file beside the target, then rename: a kill mid-save leaves the previous
    checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(Path(path)) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
