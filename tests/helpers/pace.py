"""A callback that slows training down, so a test can signal an ``attnlab train`` process
mid-epoch (``+callbacks.pace._target_=helpers.pace.Pace``; tests/ is on PYTHONPATH)."""

from __future__ import annotations

import time

import lightning.pytorch as L


class Pace(L.Callback):
    """Sleep ``seconds`` after every training batch; the numbers trained are unchanged."""

    def __init__(self, seconds: float = 0.1):
        self.seconds = seconds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)
