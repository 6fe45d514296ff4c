"""The Transformer (Vaswani et al. 2017; notes §4), layer by layer: seq2seq, and the encoder as
the backbone of a classifier and a tagger (attnlab.models.heads)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.core.contracts import PairDims, TaggingDims, TokenDims
from attnlab.core.registry import Settings, register
from attnlab.models.attention import MultiHeadAttention
from attnlab.models.heads import Encoded, SequenceClassifier, SequenceTagger, TokenEncoder
from attnlab.models.norms import Norm, check_norm, make_seq_norm, normalize
from attnlab.models.positional import Positional, positional_encoding


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(d, d_ff) -> ReLU -> dropout -> Linear(d_ff, d) (notes §4.9)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, T, D)


class Residual(nn.Module):
    """x + dropout(sublayer(x)) with the norm after the sum (post-LN) or on the input (pre-LN)."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool, norm: str = "layer"):
        super().__init__()
        self.norm = make_seq_norm(norm, d_model, "transformer")
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, sublayer, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, D), mask: (B, T) True on real positions (for BatchNorm) -> (B, T, D)."""
        if self.norm_first:
            return x + self.dropout(sublayer(normalize(self.norm, x, mask)))
        return normalize(self.norm, x + self.dropout(sublayer(x)), mask)


class EncoderLayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        heads: int,
        d_ff: int,
        dropout: float,
        norm_first: bool,
        norm: str = "layer",
    ):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, heads, dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.attn_block = Residual(d_model, dropout, norm_first, norm)
        self.ffn_block = Residual(d_model, dropout, norm_first, norm)

    def forward(
        self, x: Tensor, key_mask: Tensor | None, attn_mask: Tensor | None = None
    ) -> Tensor:
        """x: (B, S, D), key_mask: (B, 1, 1, S) True for real tokens -> (B, S, D).
        ``attn_mask`` (B, 1, S, S), True where query t may read key s, narrows ``key_mask``
        (a causal encoder's, built once for its layers); by default every real token reads all."""
        mask = None if key_mask is None else key_mask[:, 0, 0]  # (B, S)
        attn_mask = key_mask if attn_mask is None else attn_mask
        x = self.attn_block(x, lambda h: self.self_attn(h, h, h, mask=attn_mask)[0], mask)
        return self.ffn_block(x, self.ffn, mask)


class DecoderLayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        heads: int,
        d_ff: int,
        dropout: float,
        norm_first: bool,
        norm: str = "layer",
    ):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, heads, dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.self_block = Residual(d_model, dropout, norm_first, norm)
        self.cross_block = Residual(d_model, dropout, norm_first, norm)
        self.ffn_block = Residual(d_model, dropout, norm_first, norm)
        self.last_cross_weights: Tensor | None = None

    def forward(
        self,
        y: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        need_weights: bool = False,
        mask: Tensor | None = None,
    ) -> Tensor:
        """y: (B, T, D), memory: (B, S, D), memory_mask: (B, 1, 1, S) -> (B, T, D).

        Self-attention is causal (masked decoding, notes §4.6); with ``need_weights`` the
        encoder-decoder attention weights (B, H, T, S) are kept in ``last_cross_weights``.
        ``mask`` (B, T), True on real target tokens, keeps target padding out of BatchNorm.
        """
        y = self.self_block(y, lambda h: self.self_attn(h, h, h, is_causal=True)[0], mask)

        def cross(h: Tensor) -> Tensor:
            out, self.last_cross_weights = self.cross_attn(
                h, memory, memory, mask=memory_mask, need_weights=need_weights
            )
            return out

        y = self.cross_block(y, cross, mask)
        return self.ffn_block(y, self.ffn, mask)

    def step(
        self, y: Tensor, memory: Memory, cache: LayerCache | None
    ) -> tuple[Tensor, LayerCache]:
        """One new target position y: (B, 1, D) -> (B, 1, D) and the cache that includes it.

        The same computation as ``forward`` at the last position of the prefix: the causal mask
        is implicit, since the cache holds only earlier positions. The cross-attention keys and
        values are projected once, at the first step. (BatchNorm sees no padding mask here:
        in eval mode it uses its running statistics, the same for every position.)
        """
        if cache is None:
            cross_k, cross_v = self.cross_attn.keys_values(memory.states, memory.states)
        else:
            cross_k, cross_v = cache.cross_k, cache.cross_v  # (B, H, S, Dh)
        keys: list[Tensor] = []

        def self_attn(h: Tensor) -> Tensor:
            k, v = self.self_attn.keys_values(h, h)  # (B, H, 1, Dh)
            if cache is not None:
                k, v = torch.cat([cache.self_k, k], 2), torch.cat([cache.self_v, v], 2)
            keys.extend((k, v))  # (B, H, t + 1, Dh)
            return self.self_attn.attend(h, k, v)

        y = self.self_block(y, self_attn)
        y = self.cross_block(
            y, lambda h: self.cross_attn.attend(h, cross_k, cross_v, memory.key_mask)
        )
        return self.ffn_block(y, self.ffn), LayerCache(*keys, cross_k, cross_v)


def init_weights(model: nn.Module, embeddings: tuple[nn.Embedding, ...], pad_id: int) -> None:
    """The Transformers' one init: Xavier matrices, zero biases, N(0, 1/d) token embeddings."""
    for name, param in model.named_parameters():
        if param.dim() > 1:
            nn.init.xavier_uniform_(param)
        elif name.endswith("bias"):
            nn.init.zeros_(param)
    for embedding in embeddings:
        nn.init.normal_(embedding.weight, std=embedding.embedding_dim**-0.5)
        with torch.no_grad():
            embedding.weight[pad_id].zero_()


@dataclass
class LayerCache:
    """One decoder layer's projected keys and values during incremental decoding."""

    self_k: Tensor  # (B, H, t, Dh): the target positions decoded so far
    self_v: Tensor
    cross_k: Tensor  # (B, H, S, Dh): the source, projected once
    cross_v: Tensor


@dataclass
class Memory:
    """What the encoder hands to the decoder: states (B, S, D) and the source key mask; during
    incremental decoding (``decode_step``) also each decoder layer's key/value cache."""

    states: Tensor
    key_mask: Tensor  # (B, 1, 1, S), True where the source token is real
    cache: list[LayerCache] | None = None


def check_transformer(c: Settings) -> None:
    """Sizes, width % heads, dropout, and a max_len that holds the data's longest sequence."""
    c.positive("width", "heads", "depth", "ff_width", "max_len")
    if c.width % c.heads:
        c.fail("heads", f"a divisor of model.width={c.width}")
    if c.width % 2:
        c.fail("width", "an even number (sin/cos pairs)")
    c.fraction("dropout")
    check_norm(c, "transformer")
    if c.get("causal") and c.get("pooling") == "first":
        c.fail("pooling", "mean or last with model.causal=true (a CLS state first sees nothing)")
    if c.get("decoder_depth") is not None:
        c.positive("decoder_depth")
    if c.dims is not None:
        target = c.dims.max_tgt_len if isinstance(c.dims, PairDims) else 0
        longest = max(c.dims.max_src_len, target)
        if longest > c.max_len:
            c.fail("max_len", f">= {longest} tokens, the data's longest sequence")


@register("model", "transformer", check=check_transformer, data=(PairDims,))
class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer over token ids.

    ``width`` is the paper's d_model and ``ff_width`` its d_ff; ``depth`` layers in the encoder
    and, unless ``decoder_depth`` says otherwise, in the decoder.

    ``encode(src)`` -> Memory, ``decode(tgt_in, memory)`` -> logits; ``forward`` does both
    (teacher forcing). Padding id marks source positions the encoder and decoder ignore.
    ``norm`` is the norm of every residual block and of the pre-LN final norms: layer (the
    paper's), batch (per feature over the real tokens of batch x time, padding excluded; see
    ``norms.SequenceBatchNorm`` for the decoder's look-ahead through training statistics) or
    none.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        width: int = 128,
        heads: int = 4,
        depth: int = 2,
        decoder_depth: int | None = None,
        ff_width: int = 512,
        dropout: float = 0.1,
        norm_first: bool = False,
        positional: Positional = "sinusoidal",
        max_len: int = 512,
        tie_embeddings: bool = False,
        norm: Norm = "layer",
    ):
        super().__init__()
        d_model, d_ff = width, ff_width  # the paper's names
        self.pad_id = pad_id
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab_size, d_model, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, d_model, padding_idx=pad_id)
        self.src_pos = positional_encoding(positional, d_model, max_len)
        self.tgt_pos = positional_encoding(positional, d_model, max_len)
        self.embed_dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, heads, d_ff, dropout, norm_first, norm) for _ in range(depth)
        )
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, heads, d_ff, dropout, norm_first, norm)
            for _ in range(depth if decoder_depth is None else decoder_depth)
        )
        # Pre-LN stacks need a final norm; post-LN outputs are already normalised.
        self.enc_norm = make_seq_norm(norm, d_model, "transformer") if norm_first else nn.Identity()
        self.dec_norm = make_seq_norm(norm, d_model, "transformer") if norm_first else nn.Identity()
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        init_weights(self, (self.src_embed, self.tgt_embed), pad_id)
        if tie_embeddings:
            self.generator.weight = self.tgt_embed.weight

    def _embed(
        self, tokens: Tensor, embed: nn.Embedding, pos: nn.Module, offset: int = 0
    ) -> Tensor:
        """tokens (B, L) at positions offset.. -> (B, L, D)."""
        x = embed(tokens) * math.sqrt(self.d_model)  # (B, L, D), scaled as in §3.4 of the paper
        return self.embed_dropout(x if isinstance(pos, nn.Identity) else pos(x, offset))

    def encode(self, src: Tensor) -> Memory:
        """src: (B, S) token ids -> Memory with states (B, S, D)."""
        key_mask = (src != self.pad_id)[:, None, None, :]  # (B, 1, 1, S)
        x = self._embed(src, self.src_embed, self.src_pos)  # (B, S, D)
        for layer in self.encoder:
            x = layer(x, key_mask)
        return Memory(normalize(self.enc_norm, x, key_mask[:, 0, 0]), key_mask)  # (B, S, D)

    def decode(self, tgt_in: Tensor, memory: Memory, need_weights: bool = False) -> Tensor:
        """tgt_in: (B, T) ids starting with BOS -> logits (B, T, V_tgt)."""
        mask = tgt_in != self.pad_id  # (B, T)
        y = self._embed(tgt_in, self.tgt_embed, self.tgt_pos)  # (B, T, D)
        for layer in self.decoder:
            y = layer(y, memory.states, memory.key_mask, need_weights, mask)
        return self.generator(normalize(self.dec_norm, y, mask))  # (B, T, V)

    def decode_step(self, token: Tensor, memory: Memory) -> tuple[Tensor, Memory]:
        """token: (B,) -> logits (B, V_tgt) of the next position, and the memory with every
        decoder layer's keys and values so far (a key/value cache): decoding costs O(T) per
        token instead of re-reading the prefix. The first call starts the cache."""
        position = 0 if memory.cache is None else memory.cache[0].self_k.size(2)
        y = self._embed(token[:, None], self.tgt_embed, self.tgt_pos, position)  # (B, 1, D)
        caches = memory.cache or [None] * len(self.decoder)
        new_caches = []
        for layer, cache in zip(self.decoder, caches, strict=True):
            y, cache = layer.step(y, memory, cache)  # (B, 1, D)
            new_caches.append(cache)
        logits = self.generator(normalize(self.dec_norm, y))[:, 0]  # (B, V)
        return logits, replace(memory, cache=new_caches)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src: (B, S), tgt_in: (B, T) -> logits (B, T, V_tgt)."""
        return self.decode(tgt_in, self.encode(src))

    @torch.no_grad()
    def cross_attention(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Encoder-decoder attention of every decoder layer: (layers, B, H, T, S)."""
        self.decode(tgt_in, self.encode(src), need_weights=True)
        return torch.stack([layer.last_cross_weights for layer in self.decoder])


class TransformerEncoder(TokenEncoder):
    """Encoder-only Transformer over token ids, the backbone of the classifier and the tagger.

    ``norm``: layer, batch (padding excluded) or none, as in Seq2SeqTransformer. A head that
    reads the first state sets ``cls``: a learned vector prepended after positions are added
    (so it needs no position). ``causal``: every position attends to itself and the positions
    before it only, so the state at the last real token has read the sequence left to right,
    as an RNN's has (the agreement probe, notes §9.1).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        width: int = 128,
        heads: int = 4,
        depth: int = 2,
        ff_width: int = 512,
        dropout: float = 0.1,
        norm_first: bool = False,
        positional: Positional = "sinusoidal",
        max_len: int = 512,
        norm: Norm = "layer",
        causal: bool = False,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.width = width
        self.causal = causal
        self.embed = nn.Embedding(vocab_size, width, padding_idx=pad_id)
        self.pos = positional_encoding(positional, width, max_len)
        self.embed_dropout = nn.Dropout(dropout)
        self.cls: nn.Parameter | None = None
        self.encoder = nn.ModuleList(
            EncoderLayer(width, heads, ff_width, dropout, norm_first, norm) for _ in range(depth)
        )
        self.norm = make_seq_norm(norm, width, "transformer") if norm_first else nn.Identity()

    def encode(self, tokens: Tensor) -> Encoded:
        """tokens: (B, S) -> final states (B, S', D), mask (B, S') and the state at the last
        real token (B, D); S' = 1 + S with CLS."""
        mask = tokens != self.pad_id  # (B, S)
        x = self.embed_dropout(self.pos(self.embed(tokens) * math.sqrt(self.width)))  # (B, S, D)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.size(0), -1, -1), x], dim=1)  # (B, 1 + S, D)
            mask = F.pad(mask, (1, 0), value=True)  # (B, 1 + S)
        key_mask = mask[:, None, None, :]  # (B, 1, 1, S')
        attn_mask = key_mask
        if self.causal:  # position t reads positions <= t only (as a decoder does, notes §4.6)
            s = x.size(1)
            earlier = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()  # (S', S')
            attn_mask = key_mask & earlier  # (B, 1, S', S')
        for layer in self.encoder:
            x = layer(x, key_mask, attn_mask)
        states = normalize(self.norm, x, mask)  # (B, S', D)
        last = mask.sum(dim=1) - 1  # (B,) index of the last real token (padding is on the right)
        return Encoded(states, mask, states[torch.arange(x.size(0), device=x.device), last])


@register("model", "transformer_classifier", check=check_transformer, data=(TokenDims,))
class TransformerClassifier(TransformerEncoder, SequenceClassifier):
    """Encoder-only Transformer over token ids -> class logits.

    ``pooling="mean"`` averages the final states of real tokens; ``"first"`` reads the final
    state of a prepended CLS vector; ``"last"`` the state at the last real token (with
    ``causal``, a left-to-right reading, as an RNN classifier's).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pooling: Literal["mean", "first", "last"] = "mean",
        **backbone,
    ):
        super().__init__(vocab_size, **backbone)
        self.pooling = pooling
        if pooling == "first":
            self.cls = nn.Parameter(torch.zeros(1, 1, self.width))
        self.head = nn.Linear(self.width, num_classes)
        init_weights(self, (self.embed,), self.pad_id)


@register("model", "transformer_tagger", check=check_transformer, data=(TaggingDims,))
class TransformerTagger(TransformerEncoder, SequenceTagger):
    """Encoder-only Transformer -> a tag per token: the classifier's encoder and head, read at
    every position instead of pooled. Every token attends to the whole sentence."""

    def __init__(self, vocab_size: int, num_tags: int, **backbone):
        super().__init__(vocab_size, **backbone)
        self.head = nn.Linear(self.width, num_tags)
        init_weights(self, (self.embed,), self.pad_id)
