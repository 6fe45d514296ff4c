"""Recurrent sequence models: fixed-context encoder-decoder (notes §2.3) and Bahdanau attention
(notes §3).

Every seq2seq model has ``forward(src, tgt_in)``, ``encode(src) -> memory`` and
``decode(tgt_in, memory) -> logits`` over the whole target prefix. Memories hold batch-first
tensors, so ``attnlab.models.decoding.batch_select`` can copy them per beam.

``norm`` picks the recurrence (attnlab.models.recurrent_cells): none is torch's (cuDNN) GRU/LSTM;
layer and batch normalise the cells' pre-activations; weight weight-normalises W_ih and W_hh.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.core.contracts import PairDims, TaggingDims, TokenDims
from attnlab.core.registry import Settings, register
from attnlab.models.attention import Score
from attnlab.models.attention_decoder import AttendingSeq2Seq, AttentionDecoder, EncodedSource
from attnlab.models.heads import Encoded, SequenceClassifier, SequenceTagger, TokenEncoder
from attnlab.models.norms import Norm, check_norm
from attnlab.models.recurrent_cells import (
    Cell,
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
    check_norm(c, "recurrent")
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


class RNNSource(nn.Module):
    """The RNN encoder of the seq2seq models, their parameters stated once; the sizes stay on
    the model for the decoder each adds."""

    def __init__(
        self,
        src_vocab_size: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        depth: int = 1,
        cell: Cell = "gru",
        bidirectional: bool = True,
        dropout: float = 0.1,
        norm: Norm = "none",
    ):
        super().__init__()
        self.pad_id, self.emb_dim, self.width, self.depth = pad_id, emb_dim, width, depth
        self.cell, self.p_dropout, self.norm = cell, dropout, norm
        self.encoder = RNNEncoder(
            src_vocab_size, emb_dim, width, depth, cell, bidirectional, dropout, pad_id, norm
        )


@register("model", "rnn_seq2seq", check=check_rnn, data=(PairDims,))
class RNNEncoderDecoder(RNNSource):
    """Encoder-decoder with a fixed context (notes §2.3; Cho et al. 2014).

    The decoder sees the source only through the encoder's final state: it starts from it, and
    its top layer c = h_T is concatenated to every decoder input, so p(y_t | y_<t, c).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, **encoder):
        super().__init__(src_vocab_size, **encoder)
        emb_dim, hidden = self.emb_dim, self.width
        self.tgt_embed = nn.Embedding(tgt_vocab_size, emb_dim, padding_idx=self.pad_id)
        self.decoder = make_rnn(
            self.cell, emb_dim + hidden, hidden, self.depth, self.p_dropout, False, self.norm
        )
        self.dropout = nn.Dropout(self.p_dropout)
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


@register("model", "attention_seq2seq", check=check_rnn, data=(PairDims,))
class AttentionSeq2Seq(RNNSource, AttendingSeq2Seq):
    """RNN encoder + Bahdanau attention decoder (Bahdanau et al. 2014; notes §3).

    ``score`` names the alignment model a(s, h): additive (the paper's), dot, general or
    scaled_dot. The decoder starts from the encoder's final state.
    """

    def __init__(
        self, src_vocab_size: int, tgt_vocab_size: int, score: Score = "additive", **encoder
    ):
        super().__init__(src_vocab_size, **encoder)
        hidden, cell, dropout = self.width, self.cell, self.p_dropout
        self.decoder = AttentionDecoder(
            tgt_vocab_size, self.emb_dim, hidden, hidden, self.depth, cell, dropout, score,
            self.pad_id, self.norm,
        )  # fmt: skip
        init_weights(self)

    def encode(self, src: Tensor) -> EncodedSource:
        """src: (B, S) -> states (B, S, H), mask (B, S) and the final state (B, L, H)."""
        return EncodedSource(*self.encoder(src))


class RNN(TokenEncoder):
    """GRU/LSTM over token ids, the backbone of the classifier and the tagger: the state of
    token t has seen tokens 1..t; bidirectional, the backward direction adds t..S (each
    direction ``width / 2`` units). Its ``last`` state is the final state (both directions' if
    bidirectional)."""

    mean_dtype = torch.float32

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        depth: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.1,
        norm: Norm = "none",
    ):
        super().__init__()
        self.width = width
        self.encoder = RNNEncoder(
            vocab_size, emb_dim, width, depth, cell, bidirectional, dropout, pad_id, norm
        )
        self.dropout = nn.Dropout(dropout)

    def encode(self, tokens: Tensor) -> Encoded:
        """tokens: (B, S) -> states (B, S, H) (zero on padding), mask (B, S), last (B, H)."""
        states, mask, final = self.encoder(tokens)  # (B, S, H), (B, S), (B, L, H)
        return Encoded(states, mask, top_hidden(layer_first(final)))

    def readout(self, features: Tensor) -> Tensor:
        return self.dropout(features)


@register("model", "rnn_classifier", check=check_rnn, data=(TokenDims,))
class RNNClassifier(RNN, SequenceClassifier):
    """GRU/LSTM sequence classifier.

    ``pooling="last"`` reads the final state, i.e. the state at the last real token (both
    directions' final states if bidirectional); ``"mean"`` averages the states of real tokens.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pooling: Literal["last", "mean"] = "last",
        **backbone,
    ):
        super().__init__(vocab_size, **backbone)
        self.pooling = pooling
        self.head = nn.Linear(self.width, num_classes)
        init_weights(self)


@register("model", "rnn_tagger", check=check_rnn, data=(TaggingDims,))
class RNNTagger(RNN, SequenceTagger):
    """GRU/LSTM tagger (notes §2.1): the tag of token t is read from the state at t."""

    def __init__(self, vocab_size: int, num_tags: int, **backbone):
        super().__init__(vocab_size, **backbone)
        self.head = nn.Linear(self.width, num_tags)
        init_weights(self)
