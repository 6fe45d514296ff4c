"""A callback that keeps every metric a run logged, epoch by epoch, and its final weights, so a
test can run the same configuration twice in one process and compare the two bit for bit."""

from __future__ import annotations

from typing import ClassVar

import lightning.pytorch as L


class RecordMetrics(L.Callback):
    """Appends to ``RecordMetrics.runs`` one record per run: ``metrics``, a list of
    {key: value} snapshots of ``trainer.callback_metrics`` after every training epoch and after
    testing, and ``weights``, the model's state dict at the end of fitting."""

    runs: ClassVar[list[dict]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record = {"metrics": [], "weights": {}}
        RecordMetrics.runs.append(self.record)

    def _snapshot(self, trainer: L.Trainer) -> None:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        self.record["metrics"].append(metrics)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = pl_module.state_dict()
        self.record["weights"] = {key: value.detach().clone() for key, value in state.items()}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer)
