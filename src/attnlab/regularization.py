"""Penalties added to the loss by the tasks (notes §10.3), whatever the model."""

from __future__ import annotations

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
