"""Stand-in models for tests that exercise a task rather than a model."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LogitsOnly(nn.Module):
    """A seq2seq stand-in: trainable logits of the right shape for the loss, nothing else."""

    def __init__(self, vocab: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src (B, S), tgt_in (B, T) -> logits (B, T, V)."""
        return self.bias.expand(*tgt_in.shape, self.bias.numel())
