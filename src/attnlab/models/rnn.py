"""Recurrent sequence models: fixed-context encoder-decoder (notes §2.3) and Bahdanau attention
(notes §3).

Every seq2seq model has ``forward(src, tgt_in)``, ``encode(src) -> memory`` and
``decode(tgt_in, memory) -> logits`` over the whole target prefix. Memories hold batch-first
tensors, so ``attnlab.models.decoding.batch_select`` can copy them per beam.

``norm`` picks the recurrence (attnlab.models.recurrent): none is torch's (cuDNN) GRU/LSTM;
layer and batch normalise the cells' pre-activations; weight weight-normalises W_ih and W_hh.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.core.contracts import PairDims, TaggingDims, TokenDims
from attnlab.core.registry import Settings, register
from attnlab.models.attention import Attention, Score
from attnlab.models.recurrent import (
    Cell,
    RecurrentNorm,
    State,
    init_weights,
    layer_first,
    make_rnn,
    map_state,
    top_hidden,
)


def check_rnn(c: Settings) -> None:
    """Sizes, dropout, and an even width when each direction gets half of it."""
    c.positive("emb_dim", "width", "depth")
    c.fraction("dropout")
    if c.get("bidirectional") and c.width % 2:
        c.fail("width", "an even number with model.bidirectional=true (half per direction)")


class RNNEncoder(nn.Module):
    """Embeds the source and runs a GRU/LSTM over its real tokens only (packed sequences).

    A bidirectional encoder gives each direction hidden/2 units, so outputs and final states
    are ``hidden`` wide either way; the final state of a layer concatenates both directions.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden: int,
        layers: int,
        cell: str,
        bidirectional: bool,
        dropout: float,
        pad_id: int,
        norm: str = "none",
    ):
        super().__init__()
        if bidirectional and hidden % 2:
            raise ValueError(f"hidden={hidden}; allowed: an even number when bidirectional")
        self.pad_id = pad_id
        self.directions = 2 if bidirectional else 1
        width = hidden // self.directions  # per direction
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(cell, emb_dim, width, layers, dropout, bidirectional, norm)

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor, State]:
        """src: (B, S) -> states (B, S, H) (zero on padding), mask (B, S), final state (B, L, H)."""
        mask = src != self.pad_id  # (B, S)
        x = self.dropout(self.embed(src))  # (B, S, E)
        lengths = mask.sum(dim=1).cpu()  # (B,)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        return states, mask, map_state(final, self._merge_directions)  # (B, S, H), ...

    def _merge_directions(self, final: Tensor) -> Tensor:
        """(L * dirs, B, H / dirs) -> (B, L, H), forward and backward halves side by side."""
        _, batch, width = final.shape
        final = final.view(-1, self.directions, batch, width)  # (L, dirs, B, H/dirs)
        return final.permute(2, 0, 1, 3).reshape(batch, -1, self.directions * width)  # (B, L, H)


@dataclass
class FixedContext:
    """What the fixed-context decoder reads: c = h_T, and the recurrent state it continues from."""

    context: Tensor  # (B, H), the encoder's top-layer final state
    state: State  # (B, L, H): the encoder's final state, then the decoder's after each step


@register("model", "rnn_seq2seq", check=check_rnn, data=(PairDims,))
class RNNEncoderDecoder(nn.Module):
    """Encoder-decoder with a fixed context (notes §2.3; Cho et al. 2014).

    The decoder sees the source only through the encoder's final state: it starts from it, and
    its top layer c = h_T is concatenated to every decoder input, so p(y_t | y_<t, c).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        depth: int = 1,
        cell: Cell = "gru",
        bidirectional: bool = True,
        dropout: float = 0.1,
        norm: RecurrentNorm = "none",
    ):
        super().__init__()
        hidden, layers = width, depth
        self.encoder = RNNEncoder(
            src_vocab_size, emb_dim, hidden, layers, cell, bidirectional, dropout, pad_id, norm
        )
        self.tgt_embed = nn.Embedding(tgt_vocab_size, emb_dim, padding_idx=pad_id)
        self.decoder = make_rnn(cell, emb_dim + hidden, hidden, layers, dropout, False, norm)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(hidden, tgt_vocab_size)
        init_weights(self)

    def encode(self, src: Tensor) -> FixedContext:
        """src: (B, S) -> the context c = h_T and the decoder's initial state, the encoder's
        final state (B, L, H) (LSTM: (h, c))."""
        final = self.encoder(src)[2]
        return FixedContext(top_hidden(layer_first(final)), final)

    def decode(self, tgt_in: Tensor, memory: FixedContext) -> Tensor:
        """tgt_in: (B, T) ids starting with BOS -> logits (B, T, V_tgt)."""
        return self._run(tgt_in, memory)[0]

    def decode_step(self, token: Tensor, memory: FixedContext) -> tuple[Tensor, FixedContext]:
        """token: (B,) -> logits (B, V) and the memory with the decoder one step further, so
        decoding runs in O(T) recurrent steps instead of re-reading the prefix."""
        logits, state = self._run(token[:, None], memory)  # (B, 1, V)
        return logits[:, 0], replace(memory, state=layer_first(state))  # back to (B, L, H)

    def _run(self, tgt_in: Tensor, memory: FixedContext) -> tuple[Tensor, State]:
        """tgt_in: (B, T) -> logits (B, T, V) and the decoder's last state (L, B, H)."""
        y = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        context = memory.context[:, None].expand(-1, y.size(1), -1)  # (B, T, H)
        out, state = self.decoder(torch.cat([y, context], dim=-1), layer_first(memory.state))
        return self.generator(self.dropout(out)), state  # (B, T, V), (L, B, H)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src: (B, S), tgt_in: (B, T) -> logits (B, T, V_tgt)."""
        return self.decode(tgt_in, self.encode(src))


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


@register("model", "attention_seq2seq", check=check_rnn, data=(PairDims,))
class AttentionSeq2Seq(AttendingSeq2Seq):
    """RNN encoder + Bahdanau attention decoder (Bahdanau et al. 2014; notes §3).

    ``score`` names the alignment model a(s, h): additive (the paper's), dot, general or
    scaled_dot. The decoder starts from the encoder's final state.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        depth: int = 1,
        cell: Cell = "gru",
        bidirectional: bool = True,
        dropout: float = 0.1,
        score: Score = "additive",
        norm: RecurrentNorm = "none",
    ):
        super().__init__()
        hidden, layers = width, depth
        self.encoder = RNNEncoder(
            src_vocab_size, emb_dim, hidden, layers, cell, bidirectional, dropout, pad_id, norm
        )
        self.decoder = AttentionDecoder(
            tgt_vocab_size, emb_dim, hidden, hidden, layers, cell, dropout, score, pad_id, norm
        )
        init_weights(self)

    def encode(self, src: Tensor) -> EncodedSource:
        """src: (B, S) -> states (B, S, H), mask (B, S) and the final state (B, L, H)."""
        return EncodedSource(*self.encoder(src))


@register("model", "rnn_classifier", check=check_rnn, data=(TokenDims,))
class RNNClassifier(nn.Module):
    """GRU/LSTM sequence classifier.

    ``pooling="last"`` reads the final state, i.e. the state at the last real token (both
    directions' final states if bidirectional); ``"mean"`` averages the states of real tokens.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        depth: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.1,
        pooling: Literal["last", "mean"] = "last",
        norm: RecurrentNorm = "none",
    ):
        super().__init__()
        hidden, layers = width, depth
        self.pooling = pooling
        self.encoder = RNNEncoder(
            vocab_size, emb_dim, hidden, layers, cell, bidirectional, dropout, pad_id, norm
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        init_weights(self)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, S) -> logits (B, num_classes)."""
        states, mask, final = self.encoder(tokens)  # (B, S, H), (B, S), (B, L, H)
        if self.pooling == "last":
            features = top_hidden(layer_first(final))  # (B, H)
        else:
            weights = mask[..., None].float()  # (B, S, 1)
            features = (states * weights).sum(1) / weights.sum(1)  # (B, H)
        return self.head(self.dropout(features))  # (B, C)


@register("model", "rnn_tagger", check=check_rnn, data=(TaggingDims,))
class RNNTagger(nn.Module):
    """GRU/LSTM tagger (notes §2.1): the tag of token t is read from the state at t.

    Unidirectional, that state has seen tokens 1..t only; bidirectional, the backward
    direction adds t..S (each direction ``width / 2`` units).
    """

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        depth: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.1,
        norm: RecurrentNorm = "none",
    ):
        super().__init__()
        hidden, layers = width, depth
        self.encoder = RNNEncoder(
            vocab_size, emb_dim, hidden, layers, cell, bidirectional, dropout, pad_id, norm
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_tags)
        init_weights(self)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, S) -> logits (B, S, num_tags)."""
        states = self.encoder(tokens)[0]  # (B, S, H), zero on padding
        return self.head(self.dropout(states))  # (B, S, num_tags)
