"""Sequence regression (curve fitting, series forecasting): mean squared error over the horizon."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from attnlab.core.contracts import SeriesDims
from attnlab.core.errors import ConfigError
from attnlab.core.registry import Settings, register
from attnlab.tasks.base import RUNTIME, BaseTask, OptimizerFactory, SchedulerFactory


def check_forecast(c: Settings) -> None:
    c.fraction("teacher_forcing", high_open=False)


@register("task", "forecast", check=check_forecast, data=(SeriesDims,), runtime=RUNTIME)
class ForecastTask(BaseTask):
    """Trains any model with ``forward(inputs (B, L, F)) -> (B, horizon, 1)`` by MSE.

    Batches are ``(inputs, targets (B, horizon, 1))``; losses and metrics are in the units the
    data module feeds (standardised for series). With ``teacher_forcing`` = p > 0 the model is
    called as ``forward(inputs, targets, teacher_forcing=p)`` in training (an autoregressive
    decoder that may be fed the true values); validation and test predict from inputs alone.
    """

    metric_names = ("loss", "mse", "mae")

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        teacher_forcing: float = 0.0,
    ):
        if teacher_forcing and "teacher_forcing" not in inspect.signature(model.forward).parameters:
            allowed = f"0 for {type(model).__name__}, whose forward takes no teacher forcing"
            raise ConfigError("task.teacher_forcing", teacher_forcing, allowed)
        super().__init__(model, optimizer, scheduler)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"], logger=False)
        metrics = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs)  # (B, horizon, 1)

    def example_input(self, dims: SeriesDims) -> Tensor:
        return torch.zeros(1, dims.input_len, dims.in_features)  # (1, L, F)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        inputs, targets = batch  # (B, L, F), (B, horizon, 1)
        ratio = self.hparams.teacher_forcing
        if ratio:
            predicted = self.model(inputs, targets, teacher_forcing=ratio)  # (B, horizon, 1)
        else:
            predicted = self.model(inputs)  # (B, horizon, 1)
        loss = self.regularized(F.mse_loss(predicted, targets))
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=inputs.size(0))
        return loss

    def _evaluate(self, batch, metrics: MetricCollection, prefix: str) -> None:
        inputs, targets = batch  # (B, L, F), (B, horizon, 1)
        predicted = self.model(inputs)  # (B, horizon, 1)
        size = inputs.size(0)
        self.log(f"{prefix}/loss", F.mse_loss(predicted, targets), batch_size=size, sync_dist=True)
        metrics.update(predicted, targets)
        self.log_dict(metrics, batch_size=size)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")
