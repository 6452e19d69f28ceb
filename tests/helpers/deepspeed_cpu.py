"""Lightning's DeepSpeed strategy on CPU ranks (gloo), for tests only: ``trainer.strategy._target_=
deepspeed_cpu.DeepSpeedCPUStrategy`` runs egt's stages inside Lightning's own DeepSpeed engine wiring
(``deepspeed.initialize``, its checkpoint save and load, ZeRO-3's partitioned parameters) where no GPU is.

Three things are lifted, each a device check and nothing else: Lightning's ``setup_environment`` refuses a
non-CUDA accelerator; its ``setup_distributed`` checks that the devices' CUDA indices equal the local
ranks (a CPU device has no index); and ``deepspeed.initialize`` is given the local rank as ``device_rank``
(Lightning passes ``root_device.index``, None on the CPU, which DeepSpeed compares with 0). DeepSpeed's CPU
accelerator would also compile a shared-memory all-reduce op with gcc (kernels that depend on AVX-512 /
AVX2; ~40 s once per machine): skipped, gloo does every collective (as tests/helpers/ds_zero3_rollout.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

importlib.import_module("deepspeed.comm.torch")
sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


class DeepSpeedCPUStrategy(DeepSpeedStrategy):
    """``DeepSpeedStrategy`` without its CUDA-only checks (module docstring)."""

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)  # Lightning's DeepSpeed check for a CUDA accelerator skipped

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()  # without _validate_device_index_selection (CUDA indices)

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=self.config,
            model=model,
            model_parameters=filter(lambda p: p.requires_grad, model.parameters()),
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer
