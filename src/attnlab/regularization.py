"""Regularization applied by the tasks, whatever the model (notes §10.3): penalties, ensembles."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def weight_penalty(module: nn.Module, l1: float = 0.0, l2: float = 0.0) -> Tensor:
    """l1 * sum|w| + l2 * sum w^2 over weight matrices and kernels (biases and norms excluded)."""
    weights = [p for p in module.parameters() if p.requires_grad and p.dim() > 1]
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
