"""Classification of whole inputs (images, sequences): cross-entropy, accuracy and error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassHammingDistance

from attnlab.core.contracts import ImageDims, TokenDims
from attnlab.core.registry import register
from attnlab.tasks.base import (
    RUNTIME,
    BucketMetrics,
    OptimizerFactory,
    SchedulerFactory,
    StepTask,
    real_tokens,
)
from attnlab.tasks.regularization import Ensemble


@register("task", "classify", data=(TokenDims, ImageDims), runtime=RUNTIME)
class ClassifyTask(StepTask):
    """Trains any model with ``forward(x) -> logits (B, num_classes)``.

    Batches are ``(x, y)`` or ``(x, y, group)`` with ``group`` (B,) a bucket index (a length,
    a distance); given ``group_names``, validation and test also report accuracy per bucket.
    Error is 1 - accuracy (torchmetrics' Hamming distance), the quantity of He et al.'s plots.
    ``train/loss`` is the cross-entropy alone, comparable with ``val/loss``; the L1/L2 penalty
    is added only to what is optimised.
    """

    metric_names = ("loss", "acc", "error")
    supports_ensembles = True

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        group_names: tuple[str, ...] = (),
    ):
        super().__init__(model, optimizer, scheduler)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"], logger=False)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "error": MulticlassHammingDistance(num_classes, average="micro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_eval_error = MulticlassHammingDistance(num_classes, average="micro")
        if isinstance(model, Ensemble):  # each member is scored too: {split}/member{k}/acc
            self.member_metrics = nn.ModuleDict(
                {
                    split: nn.ModuleList(
                        MulticlassAccuracy(num_classes, average="micro") for _ in model.members
                    )
                    for split in ("val", "test")
                }
            )
        self.group_metrics = BucketMetrics.per_split(
            "group",
            list(group_names),
            lambda: {"acc": MulticlassAccuracy(num_classes, average="micro")},
        )

    def example_input(self, dims: TokenDims | ImageDims) -> Tensor:
        if isinstance(dims, ImageDims):
            return torch.zeros(1, dims.in_channels, dims.image_size, dims.image_size)
        return real_tokens(dims.max_src_len, dims.pad_id)  # (1, S)

    def _step(self, batch, split: str) -> Tensor:
        x, y = batch[0], batch[1]
        size = y.size(0)
        if isinstance(self.model, Ensemble):
            logits, loss = self._ensemble_step(x, y, split)
        else:
            logits = self.model(x)  # (B, num_classes)
            loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        preds = logits.argmax(-1)  # (B,)
        metrics = getattr(self, f"{split}_metrics")
        metrics.update(preds, y)
        self.log_loss(split, loss, size)
        if len(batch) > 2 and split in self.group_metrics:
            self._update_groups(preds, y, batch[2], split)
        return loss

    def _ensemble_step(self, x: Tensor, y: Tensor, split: str) -> tuple[Tensor, Tensor]:
        """Train every member on its own (bagging-weighted) loss; score the averaged prediction."""
        member_logits = self.model.member_logits(x)  # (K, B, C)
        logits = self.model.combine(member_logits)  # (B, C) log mean probability
        if split == "train":
            weights = self.model.member_weights(y.size(0), y.device)  # (K, B)
            losses = torch.stack(
                [
                    F.cross_entropy(
                        m, y, reduction="none", label_smoothing=self.hparams.label_smoothing
                    )
                    for m in member_logits
                ]
            )  # (K, B)
            loss = (losses * weights).sum(1).div(weights.sum(1).clamp_min(1)).mean()
            return logits, loss
        for member, metric in zip(member_logits, self.member_metrics[split], strict=True):
            metric.update(member.argmax(-1), y)
        for k, metric in enumerate(self.member_metrics[split]):
            self.log(f"{split}/member{k}/acc", metric, on_epoch=True, batch_size=y.size(0))
        smoothing = self.hparams.label_smoothing  # as for a single model's val/test loss
        return logits, F.cross_entropy(logits, y, label_smoothing=smoothing)

    def _update_groups(self, preds: Tensor, target: Tensor, group: Tensor, split: str) -> None:
        """preds, target, group: (B,); accuracy per group, logged at the epoch's end."""
        for metrics, rows in self.group_metrics[split].with_rows(group):
            metrics["acc"].update(preds[rows], target[rows])

    def epoch_values(self, split: str) -> dict[str, Tensor]:
        return self.group_metrics[split].compute() if split in self.group_metrics else {}

    def on_test_epoch_end(self) -> None:
        """Log accuracy per group; score the training split as the test split is scored (eval
        mode, no augmentation, same weights): test/error - train_eval/error is the gap."""
        super().on_test_epoch_end()
        data = self.trainer.datamodule
        if data is None:
            return
        for batch in data.train_dataloader():
            x, y = batch[0].to(self.device), batch[1].to(self.device)
            self.train_eval_error.update(self.model(x).argmax(-1), y)  # (B,) vs (B,)
        self.log("train_eval/error", self.train_eval_error.compute(), sync_dist=True)
        self.train_eval_error.reset()
