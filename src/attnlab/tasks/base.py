"""What every task shares: optimizer and scheduler factories, the weight penalty, and metrics
per bucket."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric, SumMetric

from attnlab.tasks.regularization import TASK_KEYS, Ensemble, decay_groups, weight_penalty

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# What the run passes to every task, beside the data's sizes: built objects and the
# regularization group's values (attnlab.tasks.regularization.TASK_KEYS) that the task takes.
RUNTIME = ("model", "optimizer", "scheduler", *TASK_KEYS)


class BaseTask(L.LightningModule):
    """Holds the model and builds its optimizer and per-step scheduler from config factories.

    Subclasses call ``save_hyperparameters`` with ``l1`` and ``l2`` among their arguments,
    name their ``metric_names`` (the objective and monitors choose among them), and state the
    ``forward`` inputs of the data's Dims in ``example_input``.
    """

    metric_names: tuple[str, ...] = ()
    supports_ensembles = False  # whether the model may be an Ensemble of members

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def example_input(self, dims: Any) -> Tensor | tuple[Tensor, ...] | None:
        """The inputs of ``forward`` for one row at the largest sizes ``dims`` state: Lightning's
        ``example_input_array``, from which its model summary shows sizes and FLOPs (None: a
        task that states none shows neither)."""
        return None

    def setup(self, stage: str) -> None:
        """Fresh metric states in this process. Under ``ddp_spawn`` on CPU each rank gets the
        module pickled by torch.multiprocessing, which moves its tensors to shared memory;
        Lightning copies parameters and buffers out of it, not torchmetrics' states, so the
        ranks would add into the same counters in place (an update lost or counted twice)."""
        for module in self.modules():
            if isinstance(module, Metric):
                module.reset()

    def regularized(self, loss: Tensor) -> Tensor:
        """``loss`` plus the L1/L2 weight penalty of the model (notes §10.3), if any.

        An ensemble's loss is the members' mean, so its penalty is the members' mean too:
        each member gets the same strength as a single model.
        """
        if self.hparams.l1 or self.hparams.l2:
            members = len(self.model.members) if isinstance(self.model, Ensemble) else 1
            penalty = weight_penalty(self.model, self.hparams.l1, self.hparams.l2)
            return loss + penalty / members
        return loss

    def configure_optimizers(self):
        # weight decay on weight matrices only (regularization.decay_groups)
        optimizer = self.optimizer_factory(params=decay_groups(self.model))
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class StepTask(BaseTask):
    """A task whose training, validation and test steps are one ``_step(batch, split)``: it
    updates ``<split>_metrics`` (a MetricCollection prefixed ``<split>/``) and logs the loss.
    Each split's metrics are logged once an epoch, with :meth:`epoch_values` beside them."""

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)  # the model's own outputs: (B, classes) or (B, S, tags)

    def _step(self, batch: Any, split: str) -> Tensor:
        """The loss of ``batch``; the split's metrics updated."""
        raise NotImplementedError

    def log_loss(self, split: str, loss: Tensor, size: int) -> None:
        """``<split>/loss``, a mean over ``size`` rows: every step's in training, the epoch's
        mean over all processes in validation and test (the per-step train loss stays local)."""
        training = split == "train"
        self.log(
            f"{split}/loss", loss, on_step=training, on_epoch=True, batch_size=size,
            sync_dist=not training,
        )  # fmt: skip

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self.regularized(self._step(batch, "train"))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def epoch_values(self, split: str) -> dict[str, Tensor]:
        """What ``split`` logs at its epoch's end besides its metrics (per bucket, per tag),
        each over all processes."""
        return {}

    def _log_epoch(self, split: str) -> None:
        """The epoch's metrics of ``split``, logged once. Logging the metric objects at every
        step costs a ``self.log`` each a step, and Lightning's bookkeeping of one (moving its
        result entry to the value's device) is a sizeable share of a small model's step; the
        values are the same, since Lightning too logs ``compute()`` at the epoch's end."""
        metrics = getattr(self, f"{split}_metrics")
        values = {**metrics.compute(), **self.epoch_values(split)}
        metrics.reset()
        self.log_dict(values, sync_dist=True)  # equal on every process

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")


def real_tokens(length: int, pad_id: int) -> Tensor:
    """(1, length) ids of one real (non-pad) token: no row is all padding."""
    return torch.full((1, length), int(pad_id == 0), dtype=torch.long)


class BucketMetrics(nn.Module):
    """The same metrics for each bucket of one split (a source length, an agreement distance),
    logged as ``<split>/<metric>_by_<kind>/<bucket>`` once per epoch, over all processes.

    Not logged per step as Lightning's metric logging would be: under DDP a process whose share
    of the split has no row of some bucket would log fewer keys than the others, and the
    epoch-end reduction would then pair mismatched collectives. Here every process computes
    every bucket in the same order; a bucket that no process saw is left out.
    """

    def __init__(
        self, split: str, kind: str, buckets: list[str], make: Callable[[], dict[str, Metric]]
    ):
        super().__init__()
        self.split, self.kind, self.buckets = split, kind, list(buckets)
        self.metrics = nn.ModuleList(nn.ModuleDict(make()) for _ in self.buckets)
        self.rows = nn.ModuleList(SumMetric() for _ in self.buckets)

    @classmethod
    def per_split(
        cls, kind: str, buckets: list[str], make: Callable[[], dict[str, Metric]]
    ) -> nn.ModuleDict:
        """{"val": ..., "test": ...}: the bucket metrics of validation and test."""
        return nn.ModuleDict({split: cls(split, kind, buckets, make) for split in ("val", "test")})

    def __len__(self) -> int:
        return len(self.buckets)

    def with_rows(self, bucket: Tensor) -> Iterator[tuple[nn.ModuleDict, Tensor]]:
        """bucket (B,): each row's bucket index -> (metrics, rows (B,) mask) of each bucket that
        has rows in the batch, for the caller to update; every bucket counts its rows."""
        for index, (metrics, rows) in enumerate(zip(self.metrics, self.rows, strict=True)):
            mask = bucket == index  # (B,)
            rows.update(mask.sum())
            if mask.any():
                yield metrics, mask

    def compute(self) -> dict[str, Tensor]:
        """{log key: value over all processes} of every bucket with rows; then reset all."""
        values = {}
        for name, metrics, rows in zip(self.buckets, self.metrics, self.rows, strict=True):
            if rows.compute() > 0:
                with warnings.catch_warnings():  # a process without rows here computes too
                    warnings.filterwarnings("ignore", ".*called before the ``update``")
                    for metric, value in metrics.items():
                        values[f"{self.split}/{metric}_by_{self.kind}/{name}"] = value.compute()
            for metric in (*metrics.values(), rows):
                metric.reset()
        return values
