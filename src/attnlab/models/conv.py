"""1-D convolutional sequence models (notes §9): a dilated conv stack, the backbone of a
classifier and a tagger (attnlab.models.heads), and seq2seq.

A conv layer sees ``kernel`` neighbours; stacking ``depth`` layers with dilation growing by
``dilation`` per layer widens what one output position sees, the receptive field
1 + sum_i (kernel - 1) * dilation**i. Beyond it a CNN is blind, which is what the
long-range agreement task measures (notes §9.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.core.contracts import PairDims, TaggingDims, TokenDims
from attnlab.core.registry import Settings, register
from attnlab.models.attention import Score
from attnlab.models.attention_decoder import AttendingSeq2Seq, AttentionDecoder, EncodedSource
from attnlab.models.heads import Encoded, SequenceClassifier, SequenceTagger, TokenEncoder
from attnlab.models.norms import Norm, check_norm, make_seq_norm, normalize, weight_normalize
from attnlab.models.recurrent_cells import Cell, init_weights


def check_conv(c: Settings) -> None:
    c.positive("width", "kernel", "dilation", "depth")
    if c.get("emb_dim") is not None:
        c.positive("emb_dim", "decoder_depth")
    c.fraction("dropout")
    check_norm(c, "conv")


class ConvStack(nn.Module):
    """``depth`` x [pad -> Conv1d -> norm -> GELU -> dropout], optionally residual.

    ``causal`` pads on the left only, so position t sees inputs <= t. Padded positions are
    zeroed after every layer, so right padding never leaks into real positions. ``norm=weight``
    weight-normalises the convs and leaves out the norm layers.
    """

    def __init__(
        self,
        channels: int,
        kernel: int,
        dilation: int,
        depth: int,
        causal: bool,
        residual: bool,
        dropout: float,
        norm: str = "none",
    ):
        super().__init__()
        self.kernel = kernel
        self.dilations = [dilation**i for i in range(depth)]
        self.causal = causal
        self.residual = residual
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d) for d in self.dilations
        )
        if norm == "weight":
            for conv in self.convs:
                weight_normalize(conv)
        self.norms = nn.ModuleList(make_seq_norm(norm, channels, "conv") for _ in self.dilations)
        self.dropout = nn.Dropout(dropout)

    @property
    def receptive_field(self) -> int:
        """How many input positions one output position depends on."""
        return 1 + sum((self.kernel - 1) * d for d in self.dilations)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, L, C), mask: (B, L) True on real positions -> (B, L, C)."""
        keep = mask[:, None].to(x.dtype)  # (B, 1, L)
        h = x.transpose(1, 2) * keep  # (B, C, L)
        for conv, norm, d in zip(self.convs, self.norms, self.dilations, strict=True):
            span = (self.kernel - 1) * d
            left = span if self.causal else span // 2
            out = conv(F.pad(h, (left, span - left)))  # (B, C, L)
            out = normalize(norm, out.transpose(1, 2), mask).transpose(1, 2)  # (B, C, L)
            out = self.dropout(F.gelu(out))
            h = (h + out if self.residual else out) * keep
        return h.transpose(1, 2)  # (B, L, C)


class ConvEncoder(TokenEncoder):
    """Embedding -> ConvStack over token ids, the backbone of the classifier and the tagger.
    Its ``last`` state is the one at the last real token: causal, it has seen the last
    ``receptive_field`` tokens."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        width: int = 128,
        kernel: int = 3,
        dilation: int = 2,
        depth: int = 4,
        causal: bool = True,
        residual: bool = True,
        dropout: float = 0.1,
        norm: Norm = "none",
    ):
        super().__init__()
        self.pad_id = pad_id
        self.width = width
        self.embed = nn.Embedding(vocab_size, width, padding_idx=pad_id)
        self.stack = ConvStack(width, kernel, dilation, depth, causal, residual, dropout, norm)
        self.dropout = nn.Dropout(dropout)

    @property
    def receptive_field(self) -> int:
        return self.stack.receptive_field

    def encode(self, tokens: Tensor) -> Encoded:
        """tokens: (B, S) -> states (B, S, C), mask (B, S) and the last real token's state."""
        mask = tokens != self.pad_id  # (B, S)
        h = self.stack(self.dropout(self.embed(tokens)), mask)  # (B, S, C)
        last = mask.sum(dim=1) - 1  # (B,) index of the last real token
        return Encoded(h, mask, h[torch.arange(h.size(0), device=h.device), last])  # (B, C)

    def readout(self, features: Tensor) -> Tensor:
        return self.dropout(features)


@register("model", "conv_classifier", check=check_conv, data=(TokenDims,))
class ConvClassifier(ConvEncoder, SequenceClassifier):
    """Embedding -> ConvStack -> the features at the last real token -> logits.

    Reading the last position (where the verb stands in the agreement task) rather than pooling
    makes the receptive field matter: with causal convolutions the prediction depends only on
    the last ``receptive_field`` tokens.
    """

    pooling = "last"

    def __init__(self, vocab_size: int, num_classes: int, **backbone):
        super().__init__(vocab_size, **backbone)
        self.head = nn.Linear(self.width, num_classes)
        init_weights(self)


@register("model", "conv_tagger", check=check_conv, data=(TaggingDims,))
class ConvTagger(ConvEncoder, SequenceTagger):
    """Embedding -> ConvStack -> a tag per position.

    Not causal by default: the tag of token t sees ``receptive_field // 2`` tokens on each side
    (``causal=true``: the ``receptive_field - 1`` tokens on its left, as a left-to-right RNN).
    """

    def __init__(self, vocab_size: int, num_tags: int, causal: bool = False, **backbone):
        super().__init__(vocab_size, causal=causal, **backbone)
        self.head = nn.Linear(self.width, num_tags)
        init_weights(self)


@register("model", "conv_seq2seq", check=check_conv, data=(PairDims,))
class ConvEncoderAttentionDecoder(AttendingSeq2Seq):
    """Conv encoder + the Bahdanau attention decoder (attnlab.models.attention_decoder).

    The decoder's hidden size is ``width``, its layers ``decoder_depth``; it starts from
    tanh(W mean(source states)).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        emb_dim: int = 64,
        width: int = 128,
        kernel: int = 3,
        dilation: int = 2,
        depth: int = 4,
        causal: bool = False,
        residual: bool = True,
        decoder_depth: int = 1,
        cell: Cell = "gru",
        dropout: float = 0.1,
        score: Score = "additive",
        norm: Norm = "none",
    ):
        super().__init__()
        channels, layers = width, decoder_depth
        self.pad_id = pad_id
        self.src_embed = nn.Embedding(src_vocab_size, channels, padding_idx=pad_id)
        self.encoder = ConvStack(channels, kernel, dilation, depth, causal, residual, dropout, norm)
        self.dropout = nn.Dropout(dropout)
        self.bridge = nn.Linear(channels, channels)
        self.decoder = AttentionDecoder(
            tgt_vocab_size, emb_dim, channels, channels, layers, cell, dropout, score, pad_id, norm
        )
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        return self.encoder.receptive_field

    def encode(self, src: Tensor) -> EncodedSource:
        """src: (B, S) -> states (B, S, C), mask (B, S) and the decoder's initial state."""
        mask = src != self.pad_id  # (B, S)
        states = self.encoder(self.dropout(self.src_embed(src)), mask)  # (B, S, C)
        weights = mask[..., None].to(states.dtype)  # (B, S, 1)
        summary = torch.tanh(self.bridge((states * weights).sum(1) / weights.sum(1)))  # (B, C)
        return EncodedSource(states, mask, self.decoder.initial_state(summary))
