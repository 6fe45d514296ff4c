"""A callback that fails one rank mid-training: loaded by ``attnlab train`` processes in tests
(``+callbacks.crash._target_=crash_callback.CrashOnRank`` with this folder on PYTHONPATH)."""

from __future__ import annotations

import lightning.pytorch as L


class CrashOnRank(L.Callback):
    def __init__(self, rank: int = 1, batch: int = 2):
        self.rank, self.batch = rank, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and batch_idx == self.batch:
            raise RuntimeError(f"rank {self.rank} fails at batch {batch_idx}, as the test asks")
