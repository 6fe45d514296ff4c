"""Regularization applied by the tasks, whatever the model (notes §10.3): the settings of the
``regularization`` group, weight penalties, parameter groups for weight decay, ensembles."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.core.registry import Settings, register
from attnlab.models.norms import weight_norm_gains

TASK_KEYS = ("label_smoothing", "l1", "l2")  # the keys a task takes; the rest build the model


def check_regularization(c: Settings) -> None:
    c.fraction("label_smoothing")
    c.non_negative("l1", "l2")
    c.positive("ensemble_size")


@register("regularization", "default", check=check_regularization, instantiate=False)
@dataclass
class Regularization:
    """Countermeasures against overfitting that work on any model (notes §10.3)."""

    label_smoothing: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    ensemble_size: int = 1  # > 1: that many members, predictions averaged
    ensemble_mode: Literal["seeds", "bagging"] = "seeds"  # bagging: bootstrap weights per step


def decayed(module: nn.Module) -> list[nn.Parameter]:
    """The parameters that weight decay and L1/L2 penalties act on: weight matrices and kernels.

    Biases, norm gains and embeddings are left out, as the field does (nanoGPT's
    configure_optimizers, timm's param_groups_weight_decay): shrinking a norm's gain or a
    token's embedding towards zero is not a simpler function, only a rescaled one. A
    weight-normalised matrix is decayed through its direction v, not its gains g.
    """
    skip = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    skip |= {id(g) for g in weight_norm_gains(module)}
    trainable = (p for p in module.parameters() if p.requires_grad)
    return [p for p in trainable if p.dim() > 1 and id(p) not in skip]


def decay_groups(module: nn.Module) -> list[dict]:
    """Optimizer parameter groups: ``decayed`` parameters with the optimizer's weight decay,
    every other trainable parameter with none."""
    decay = {id(p) for p in decayed(module)}
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in decay]
    groups = [
        {"params": decayed(module), "name": "decay"},
        {"params": rest, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [group for group in groups if group["params"]]


def weight_penalty(module: nn.Module, l1: float = 0.0, l2: float = 0.0) -> Tensor:
    """l1 * sum|w| + l2 * sum w^2 over the ``decayed`` parameters."""
    weights = decayed(module)
    penalty = torch.zeros((), device=weights[0].device if weights else None)
    if l1:
        penalty = penalty + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        penalty = penalty + l2 * sum(w.pow(2).sum() for w in weights)
    return penalty


class Ensemble(nn.Module):
    """K members whose predictions are averaged in probability (notes §10.3).

    With ``bagging`` (Breiman 1996) each member's loss weights every example by a Poisson(1)
    count drawn at each step: online bagging (Oza & Russell 2001), which tends to training
    each member on its own bootstrap sample as the number of steps grows and needs no change
    to the data. Without it, members differ only by their initial weights (seeds).
    """

    def __init__(self, members: list[nn.Module], bagging: bool = False):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.bagging = bagging

    def member_logits(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members])  # (K, B, C)

    @staticmethod
    def combine(member_logits: Tensor) -> Tensor:
        """(K, B, C) logits -> (B, C) log of the members' mean probability."""
        log_probs = member_logits.log_softmax(-1)  # (K, B, C)
        return log_probs.logsumexp(0) - math.log(member_logits.size(0))

    def forward(self, x: Tensor) -> Tensor:
        return self.combine(self.member_logits(x))  # (B, C), usable as logits

    def member_weights(self, batch_size: int, device: torch.device) -> Tensor:
        """(K, B) per-example loss weights: Poisson(1) counts when bagging, else ones."""
        ones = torch.ones(len(self.members), batch_size, device=device)
        return torch.poisson(ones) if self.bagging and self.training else ones
