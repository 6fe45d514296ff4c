"""Sequence labelling (notes §2.1): one tag per token, padding out of the loss and metrics."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassExactMatch, MulticlassF1Score

from attnlab.core.contracts import IGNORE_TAG, TaggingDims
from attnlab.core.registry import register
from attnlab.tasks.base import (
    RUNTIME,
    BucketMetrics,
    OptimizerFactory,
    SchedulerFactory,
    StepTask,
    real_tokens,
)


@register("task", "tag", data=(TaggingDims,), runtime=RUNTIME)
class TagTask(StepTask):
    """Trains any model with ``forward(tokens (B, S)) -> logits (B, S, num_tags)``.

    Batches are ``(tokens, tags)`` or ``(tokens, tags, groups)``, tags and groups (B, S) with
    IGNORE_TAG on padding. Metrics over the real tokens: ``token_acc``, ``sentence_acc`` (every
    tag of a sentence right), ``f1`` (macro over tags); validation and test also log F1 per tag
    (``<split>/f1_by_tag/<TAG>``) and, given ``group_names``, token accuracy per token group
    (``<split>/token_acc_by_group/<group>``).
    """

    metric_names = ("loss", "token_acc", "sentence_acc", "f1")

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        num_tags: int,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        tag_names: tuple[str, ...] = (),
        group_names: tuple[str, ...] = (),
    ):
        super().__init__(model, optimizer, scheduler)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"], logger=False)
        self.tag_names = list(tag_names) or [str(i) for i in range(num_tags)]
        tokens = MetricCollection(
            {
                "token_acc": MulticlassAccuracy(num_tags, average="micro", ignore_index=IGNORE_TAG),
                "f1": MulticlassF1Score(num_tags, average="macro", ignore_index=IGNORE_TAG),
            }
        )
        sentences = MulticlassExactMatch(num_tags, ignore_index=IGNORE_TAG)
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_metrics", tokens.clone(prefix=f"{split}/"))
            setattr(self, f"{split}_sentence_acc", sentences.clone())
        self.tag_f1 = nn.ModuleDict(
            {
                split: MulticlassF1Score(num_tags, average=None, ignore_index=IGNORE_TAG)
                for split in ("val", "test")
            }
        )
        self.group_metrics = BucketMetrics.per_split(
            "group",
            list(group_names),
            lambda: {"token_acc": MulticlassAccuracy(num_tags, average="micro")},
        )

    def example_input(self, dims: TaggingDims) -> Tensor:
        return real_tokens(dims.max_src_len, dims.pad_id)  # (1, S)

    def _step(self, batch, split: str) -> Tensor:
        tokens, tags = batch[0], batch[1]  # (B, S) each
        logits = self.model(tokens)  # (B, S, num_tags)
        loss = F.cross_entropy(
            logits.flatten(0, 1),
            tags.flatten(),
            ignore_index=IGNORE_TAG,
            label_smoothing=self.hparams.label_smoothing,
        )
        preds = logits.argmax(-1)  # (B, S)
        real = tags != IGNORE_TAG  # (B, S)
        size = int(real.sum())
        metrics = getattr(self, f"{split}_metrics")
        metrics.update(preds.flatten(), tags.flatten())
        sentence_acc = getattr(self, f"{split}_sentence_acc")
        sentence_acc.update(preds, tags)
        self.log_loss(split, loss, size)
        if split in self.tag_f1:
            self.tag_f1[split].update(preds.flatten(), tags.flatten())
            if len(batch) > 2:
                for bucket, rows in self.group_metrics[split].with_rows(batch[2][real]):
                    bucket["token_acc"].update(preds[real][rows], tags[real][rows])
        return loss

    def epoch_values(self, split: str) -> dict[str, Tensor]:
        """Sentence accuracy; for validation and test also F1 of each tag and token accuracy of
        each group."""
        sentence_acc = getattr(self, f"{split}_sentence_acc")
        values = {f"{split}/sentence_acc": sentence_acc.compute()}
        sentence_acc.reset()
        if split in self.tag_f1:
            per_tag = self.tag_f1[split].compute()  # (num_tags,)
            self.tag_f1[split].reset()
            names = [f"{split}/f1_by_tag/{name}" for name in self.tag_names]
            values.update(zip(names, per_tag, strict=True))
            values.update(self.group_metrics[split].compute())
        return values
