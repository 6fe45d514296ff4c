"""A callback that fails one rank mid-training: loaded by ``attnlab train`` processes in tests
(``+callbacks.crash._target_=crash_callback.CrashOnRank`` with this folder on PYTHONPATH)."""

from __future__ import annotations

import time

import lightning.pytorch as L


class CrashOnRank(L.Callback):
    """Rank ``rank`` raises at batch ``batch``; the other ranks stall there for ``stall`` seconds,
    as NCCL ranks wait in a collective whose peer has died (gloo's would raise at once)."""

    def __init__(self, rank: int = 1, batch: int = 2, stall: float = 0.0):
        self.rank, self.batch, self.stall = rank, batch, stall

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx != self.batch:
            return
        if trainer.global_rank == self.rank:
            raise RuntimeError(f"rank {self.rank} fails at batch {batch_idx}, as the test asks")
        time.sleep(self.stall)
