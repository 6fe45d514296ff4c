"""Autoregressive decoding for any model exposing ``encode(src)`` and ``decode(tgt_in, memory)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def greedy_decode(
    model: nn.Module, src: Tensor, bos_id: int, eos_id: int, pad_id: int, max_len: int
) -> Tensor:
    """src: (B, S) -> predicted ids (B, <=max_len) without BOS; positions after EOS hold pad_id."""
    memory = model.encode(src)
    tokens = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)  # (B,)
    for _ in range(max_len):
        logits = model.decode(tokens, memory)[:, -1]  # (B, V)
        next_token = logits.argmax(dim=-1).masked_fill(finished, pad_id)  # (B,)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (B, t + 1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return tokens[:, 1:]
