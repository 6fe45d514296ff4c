"""Autoregressive decoding for any model exposing ``encode(src)`` and ``decode(tgt_in, memory)``."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.core.contracts import DecodesStepwise


def batch_select(memory: Any, index: Tensor) -> Any:
    """Pick rows ``index`` (N,) along dim 0 of every tensor in a memory object.

    Memories are tensors, or tuples, lists, dicts and dataclasses of them, batch-first; other
    values pass through. ``batch_select(m, torch.arange(B).repeat_interleave(k))`` gives every
    example k copies (one per beam); an index of beam origins reorders them.
    """
    if isinstance(memory, Tensor):
        return memory.index_select(0, index)
    if dataclasses.is_dataclass(memory) and not isinstance(memory, type):
        changes = {
            f.name: batch_select(getattr(memory, f.name), index) for f in dataclasses.fields(memory)
        }
        return dataclasses.replace(memory, **changes)
    if isinstance(memory, tuple | list):
        return type(memory)(batch_select(item, index) for item in memory)
    if isinstance(memory, dict):
        return {key: batch_select(value, index) for key, value in memory.items()}
    return memory


@torch.no_grad()
def greedy_decode(
    model: nn.Module, src: Tensor, bos_id: int, eos_id: int, pad_id: int, max_len: int
) -> Tensor:
    """src: (B, S) -> predicted ids (B, <=max_len) without BOS; positions after EOS hold pad_id."""
    memory = model.encode(src)
    tokens = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)  # (B,)
    stepwise = isinstance(model, DecodesStepwise)  # a decoder state: O(T) steps, not O(T^2)
    for _ in range(max_len):
        if stepwise:
            logits, memory = model.decode_step(tokens[:, -1], memory)  # (B, V)
        else:
            logits = model.decode(tokens, memory)[:, -1]  # (B, V), the prefix read again
        next_token = logits.argmax(dim=-1).masked_fill(finished, pad_id)  # (B,)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (B, t + 1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return tokens[:, 1:]


@torch.no_grad()
def beam_search(
    model: nn.Module,
    src: Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    width: int = 4,
    length_penalty: float = 0.0,
) -> Tensor:
    """src: (B, S) -> the best of ``width`` hypotheses per example (B, <=max_len), without BOS.

    Hypotheses are ranked by their summed log-probability; finished ones keep their score and
    are carried on with pad_id. The final pick divides by ((5 + length) / 6) ** length_penalty
    (Wu et al. 2016), so 0 ranks by raw score. Width 1 is greedy decoding.
    """
    if width <= 0:
        raise ValueError(f"beam width={width}; allowed: an integer >= 1")
    batch, device = src.size(0), src.device
    rows = torch.arange(batch, device=device)  # (B,)
    memory = batch_select(model.encode(src), rows.repeat_interleave(width))  # B * k rows
    tokens = torch.full((batch * width, 1), bos_id, dtype=torch.long, device=device)  # (Bk, 1)
    scores = torch.zeros(batch, width, device=device)  # (B, k)
    scores[:, 1:] = float("-inf")  # all beams start equal: keep one copy alive at first
    finished = torch.zeros(batch * width, dtype=torch.bool, device=device)  # (Bk,)
    lengths = torch.zeros(batch * width, device=device)  # (Bk,) tokens up to and with EOS
    stepwise = isinstance(model, DecodesStepwise)  # a decoder state: O(T) steps, not O(T^2)
    for _ in range(max_len):
        if stepwise:
            logits, memory = model.decode_step(tokens[:, -1], memory)  # (Bk, V)
        else:
            logits = model.decode(tokens, memory)[:, -1]  # (Bk, V), the prefix read again
        log_probs = logits.log_softmax(dim=-1)  # (Bk, V)
        vocab = log_probs.size(-1)
        log_probs[finished] = float("-inf")
        log_probs[finished, pad_id] = 0.0  # a finished hypothesis only extends with padding
        candidates = scores.view(-1, 1) + log_probs  # (Bk, V)
        scores, flat = candidates.view(batch, width * vocab).topk(width, dim=-1)  # (B, k)
        origin = (rows[:, None] * width + flat // vocab).view(-1)  # (Bk,) source beam rows
        next_token = (flat % vocab).view(-1)  # (Bk,)
        tokens = torch.cat([tokens[origin], next_token[:, None]], dim=1)  # (Bk, t + 1)
        if stepwise:  # each hypothesis continues from the decoder state of the beam it extends
            memory = batch_select(memory, origin)
        lengths = lengths[origin] + (~finished[origin]).float()
        finished = finished[origin] | (next_token == eos_id)
        if finished.all():
            break
    penalty = ((5.0 + lengths.view(batch, width)) / 6.0) ** length_penalty  # (B, k)
    best = (scores / penalty).argmax(dim=-1)  # (B,)
    return tokens.view(batch, width, -1)[rows, best, 1:]  # (B, T)
