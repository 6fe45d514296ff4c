"""What every task shares: optimizer and scheduler factories, and the weight penalty."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as L
import torch
from torch import Tensor, nn

from attnlab.regularization import weight_penalty

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class BaseTask(L.LightningModule):
    """Holds the model and builds its optimizer and per-step scheduler from config factories.

    Subclasses call ``save_hyperparameters`` with ``l1`` and ``l2`` among their arguments.
    """

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

    def regularized(self, loss: Tensor) -> Tensor:
        """``loss`` plus the L1/L2 weight penalty of the model (notes §10.3), if any.

        An ensemble's loss is the members' mean, so its penalty is the members' mean too:
        each member gets the same strength as a single model.
        """
        if self.hparams.l1 or self.hparams.l2:
            members = len(getattr(self.model, "members", [self.model]))
            penalty = weight_penalty(self.model, self.hparams.l1, self.hparams.l2)
            return loss + penalty / members
        return loss

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
