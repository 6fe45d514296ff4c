"""The Bahdanau attention decoder (notes §3.2) and the seq2seq model around it, shared by the
encoders that hand it every source state: the RNN's (attnlab.models.rnn) and the conv stack's
(attnlab.models.conv)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from attnlab.models.attention import Attention
from attnlab.models.recurrent_cells import State, layer_first, make_rnn, top_hidden


@dataclass
class EncodedSource:
    """What an attention decoder reads: every source state, not one vector."""

    states: Tensor  # (B, S, K) keys and values
    mask: Tensor  # (B, S) True on real source tokens
    state: State  # the decoder's initial state, (B, L, H)
    prepared: Tensor | None = None  # the score's key part, kept between decode steps


class AttentionDecoder(nn.Module):
    """Bahdanau decoder (notes §3.2): at step t the previous state s_{t-1} attends over the
    source states, and the context c_t joins the input embedding; logits come from [s_t; c_t].
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden: int,
        key_dim: int,
        layers: int,
        cell: str,
        dropout: float,
        score: str,
        pad_id: int,
        norm: str = "none",
    ):
        super().__init__()
        self.layers = layers
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.attention = Attention(score, hidden, key_dim, hidden)
        self.rnn = make_rnn(cell, emb_dim + key_dim, hidden, layers, dropout, False, norm)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(hidden + key_dim, vocab_size)

    def initial_state(self, summary: Tensor) -> State:
        """A source summary (B, H) -> initial state (B, L, H), the same for every layer."""
        h = summary[:, None].expand(-1, self.layers, -1).contiguous()  # (B, L, H)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, tgt_in: Tensor, memory: EncodedSource) -> tuple[Tensor, Tensor]:
        """tgt_in: (B, T) -> logits (B, T, V) and attention weights (B, T, S)."""
        logits, weights, _ = self.run(tgt_in, memory)
        return logits, weights

    def run(self, tgt_in: Tensor, memory: EncodedSource) -> tuple[Tensor, Tensor, State]:
        """tgt_in: (B, T) -> logits (B, T, V), weights (B, T, S) and the final state (L, B, H)."""
        y = self.dropout(self.embed(tgt_in))  # (B, T, E)
        state = layer_first(memory.state)  # (L, B, H)
        prepared = memory.prepared
        if prepared is None:  # the keys' part of the score: once, not at every step
            prepared = self.attention.prepare(memory.states)
        outputs, weights = [], []
        for t in range(tgt_in.size(1)):
            # s_{t-1} attends: context (B, K), alpha (B, S)
            context, alpha = self.attention(top_hidden(state), memory.states, memory.mask, prepared)
            step_in = torch.cat([y[:, t], context], dim=-1)[:, None]  # (B, 1, E+K)
            out, state = self.rnn(step_in, state)  # (B, 1, H)
            outputs.append(torch.cat([out[:, 0], context], dim=-1))  # (B, H+K)
            weights.append(alpha)  # (B, S)
        features = torch.stack(outputs, dim=1)  # (B, T, H+K)
        return self.generator(self.dropout(features)), torch.stack(weights, dim=1), state


class AttendingSeq2Seq(nn.Module, ABC):
    """What every encoder + AttentionDecoder model shares; subclasses define ``encode``."""

    decoder: AttentionDecoder

    @abstractmethod
    def encode(self, src: Tensor) -> EncodedSource:
        """src: (B, S) -> the source states, mask and the decoder's initial state."""

    def decode(self, tgt_in: Tensor, memory: EncodedSource) -> Tensor:
        """tgt_in: (B, T) ids starting with BOS -> logits (B, T, V_tgt)."""
        return self.decoder(tgt_in, memory)[0]

    def decode_step(self, token: Tensor, memory: EncodedSource) -> tuple[Tensor, EncodedSource]:
        """token: (B,) -> logits (B, V) and the memory with the decoder one step further.

        Lets greedy decoding run in O(T) decoder steps instead of re-reading the prefix.
        """
        if memory.prepared is None:
            memory = replace(memory, prepared=self.decoder.attention.prepare(memory.states))
        logits, _, state = self.decoder.run(token[:, None], memory)  # (B, 1, V)
        return logits[:, 0], replace(memory, state=layer_first(state))  # back to (B, L, H)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src: (B, S), tgt_in: (B, T) -> logits (B, T, V_tgt)."""
        return self.decode(tgt_in, self.encode(src))

    @torch.no_grad()
    def cross_attention(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Attention weights as (layers=1, B, heads=1, T, S), the layout of AttentionMaps."""
        return self.decoder(tgt_in, self.encode(src))[1][None, :, None]
