"""Heads over a backbone of token ids: a class per sequence (pooled) or a tag per token.

A backbone (``TokenEncoder``: the Transformer encoder, the RNN, the conv stack) states its
parameters once and gives ``encode(tokens) -> Encoded``; a model is a backbone with a head
mixed in (``SequenceClassifier``, ``SequenceTagger``) and the Linear ``head`` it adds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Encoded:
    """A backbone's view of a batch of sequences."""

    states: Tensor  # (B, S, D)
    mask: Tensor  # (B, S) True on real tokens
    last: Tensor | None = None  # (B, D): what the backbone offers as the sequence's last state


class TokenEncoder(nn.Module, ABC):
    """A backbone over token ids (B, S); ``width`` is D, the width of its states."""

    width: int
    mean_dtype: torch.dtype | None = None  # of the weights of mean pooling; None: the states'

    @abstractmethod
    def encode(self, tokens: Tensor) -> Encoded:
        """tokens: (B, S) -> states (B, S', D), mask (B, S') and the last state (B, D)."""

    def readout(self, features: Tensor) -> Tensor:
        """What features go through before a head: dropout, or (this default) nothing."""
        return features


def pool(encoded: Encoded, pooling: str, mean_dtype: torch.dtype | None = None) -> Tensor:
    """One vector per sequence (B, D): the backbone's ``last`` state, the ``first`` state (a
    CLS position) or the ``mean`` of the real tokens' states (weights of ``mean_dtype``)."""
    if pooling == "last":
        return encoded.last
    if pooling == "first":
        return encoded.states[:, 0]
    weights = encoded.mask[..., None].to(mean_dtype or encoded.states.dtype)  # (B, S, 1)
    return (encoded.states * weights).sum(1) / weights.sum(1)  # (B, D)


class SequenceClassifier(TokenEncoder):
    """Head: the states pooled by ``pooling`` -> the Linear ``head`` -> class logits."""

    pooling: str
    head: nn.Linear

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, S) -> logits (B, num_classes)."""
        features = pool(self.encode(tokens), self.pooling, self.mean_dtype)  # (B, D)
        return self.head(self.readout(features))  # (B, C)


class SequenceTagger(TokenEncoder):
    """Head: the Linear ``head`` at every position -> a tag per token."""

    head: nn.Linear

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, S) -> logits (B, S, num_tags)."""
        return self.head(self.readout(self.encode(tokens).states))  # (B, S, num_tags)
