"""egt entry point: ``python train.py [overrides]`` runs the stages in ``cfg.stages``.

``model=/path/to/hf/vlm`` is accepted as a shorthand for
``model=local model.path=/path/to/hf/vlm``, and a nested group can be chosen with a dot
(``rl.loss=ppo_clip`` for ``rl/loss=ppo_clip``).

A mistake the user can fix (a bad value, a missing path, a bad row) prints one line and exits 1;
``EGT_DEBUG=1`` or ``HYDRA_FULL_ERROR=1`` shows the full traceback (egt.cli.UserFacingError).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import egt.config  # noqa: F401  (registers the typed schemas before Hydra composes)
from egt.cli import apply_debug_switch, main_impl, rewrite_group_args, rewrite_model_path_args


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return main_impl(cfg)


if __name__ == "__main__":
    apply_debug_switch()  # EGT_DEBUG=1: full tracebacks (else a fixable mistake prints one line)
    sys.argv = rewrite_group_args(rewrite_model_path_args(sys.argv))
    main()
