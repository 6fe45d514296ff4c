"""A callback that fails one rank mid-training: loaded by ``attnlab train`` processes in tests
(``+callbacks.crash._target_=crash_callback.CrashOnRank`` with this folder on PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import lightning.pytorch as L


class CrashOnRank(L.Callback):
    """Rank ``rank`` fails at batch ``batch``: it raises, or with ``how=SIGKILL`` (any signal
    name) sends itself that signal: SIGKILL leaves no Python code to run, SIGUSR2 goes to the
    process's handler (a preemption). The other ranks stall there for
    ``stall`` seconds, as NCCL ranks wait in a collective whose peer has died (gloo's would
    raise at once). With ``once`` (a file path), only the first run fails: every rank reads
    the file at setup, which ends in a barrier, before rank 1 writes it."""

    def __init__(
        self,
        rank: int = 1,
        batch: int = 2,
        stall: float = 0.0,
        how: str = "raise",
        once: str | None = None,
    ):
        self.rank, self.batch, self.stall, self.how = rank, batch, stall, how
        self.once = Path(once) if once else None
        self.armed = True

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        self.armed = not (self.once and self.once.exists())

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx != self.batch or not self.armed:
            return
        if trainer.global_rank != self.rank:
            time.sleep(self.stall)
            return
        if self.once:
            self.once.touch()
        if self.how != "raise":  # a fatal signal ends the process; another one is handled
            os.kill(os.getpid(), signal.Signals[self.how])
            return
        raise RuntimeError(f"rank {self.rank} fails at batch {batch_idx}, as the test asks")
