"""Positional encodings (notes §4.8): sinusoidal, learned, or none."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor, nn

Positional = Literal["sinusoidal", "learned", "none"]
POSITIONAL_ENCODINGS = get_args(Positional)


class SinusoidalPositionalEncoding(nn.Module):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Vaswani et al. §3.5)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)  # (L, 1)
        inv_freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (B, T, D) at positions offset..offset+T-1 -> (B, T, D)."""
        return x + self.table[offset : offset + x.size(1)]


class LearnedPositionalEncoding(nn.Module):
    """One trained vector per position (as in BERT/GPT)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.table = nn.Embedding(max_len, d_model)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (B, T, D) at positions offset..offset+T-1 -> (B, T, D)."""
        return x + self.table.weight[offset : offset + x.size(1)]


def positional_encoding(kind: str, d_model: int, max_len: int) -> nn.Module:
    """Build a positional encoding by name; ``none`` leaves the input as a bag of tokens."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if kind == "learned":
        return LearnedPositionalEncoding(d_model, max_len)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"positional={kind!r}; allowed: {', '.join(POSITIONAL_ENCODINGS)}")
