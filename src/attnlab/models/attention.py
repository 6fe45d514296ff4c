"""Attention building blocks (notes §3, §4.3-4.6, §7-8)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attention_weights(q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d_k)) with an optional boolean mask (True = may attend).

    q: (B, H, T, Dh), k: (B, H, S, Dh), mask broadcastable to (B, H, T, S) -> (B, H, T, S).
    This is the explicit form of what ``F.scaled_dot_product_attention`` computes in one
    fused kernel; it is only used when the weights themselves are wanted (plots, tests).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, §3.2.2).

    Heads are computed by ``F.scaled_dot_product_attention``; with ``need_weights`` the same
    result is computed explicitly so the per-head weights can be returned.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
        self.heads = heads
        self.head_dim = d_model // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query: (B, T, D), key/value: (B, S, D); mask broadcastable to (B, H, T, S), True = keep.

        Returns the output (B, T, D) and, if ``need_weights``, the weights (B, H, T, S).
        """
        q = self._split_heads(self.q_proj(query))  # (B, H, T, Dh)
        k, v = self.keys_values(key, value)  # (B, H, S, Dh) each
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            if is_causal:
                t, s = q.size(-2), k.size(-2)
                causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
                mask = causal if mask is None else mask & causal
            weights = attention_weights(q, k, mask)  # (B, H, T, S)
            heads_out = F.dropout(weights, dropout, self.training) @ v  # (B, H, T, Dh)
        else:
            heads_out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
            )  # (B, H, T, Dh)
        return self._merge_heads(heads_out), weights

    def keys_values(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """key/value (B, S, D) -> projected keys and values per head (B, H, S, Dh): what an
        incremental decoder caches."""
        return self._split_heads(self.k_proj(key)), self._split_heads(self.v_proj(value))

    def attend(self, query: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """query (B, T, D) over already projected k, v (B, H, S, Dh) -> (B, T, D); no dropout
        and no causal mask: for decoding, where k and v hold only positions up to the query."""
        q = self._split_heads(self.q_proj(query))  # (B, H, T, Dh)
        return self._merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def _merge_heads(self, heads_out: Tensor) -> Tensor:
        """(B, H, T, Dh) -> out_proj of the concatenated heads (B, T, D)."""
        batch, _, length, _ = heads_out.shape
        return self.out_proj(heads_out.transpose(1, 2).reshape(batch, length, -1))  # (B, T, D)


class AdditiveScore(nn.Module):
    """Bahdanau (concat) score: v^T tanh(W_q q + W_k k) (notes §3.2.1, e_ij = a(s_{i-1}, h_j)).

    Every score has ``prepare(keys)``, the part that does not depend on the query (here
    W_k k + b), which a decoder computes once per source sequence and passes as ``prepared``.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.query = nn.Linear(query_dim, attn_dim, bias=False)
        self.key = nn.Linear(key_dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        """keys: (B, S, Dk) -> W_k k + b (B, S, A)."""
        return self.key(keys)

    def forward(self, query: Tensor, keys: Tensor, prepared: Tensor | None = None) -> Tensor:
        """query: (B, Dq), keys: (B, S, Dk), prepared: prepare(keys) or None -> scores (B, S)."""
        prepared = self.prepare(keys) if prepared is None else prepared  # (B, S, A)
        hidden = torch.tanh(self.query(query)[:, None] + prepared)  # (B, S, A)
        return self.v(hidden).squeeze(-1)  # (B, S)


class DotScore(nn.Module):
    """Luong dot score: q . k (query and key of the same size)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        if query_dim != key_dim:
            raise ValueError(f"dot score needs query_dim == key_dim, got {query_dim} != {key_dim}")

    def prepare(self, keys: Tensor) -> Tensor:
        return keys  # (B, S, D): nothing to precompute

    def forward(self, query: Tensor, keys: Tensor, prepared: Tensor | None = None) -> Tensor:
        """query: (B, D), keys: (B, S, D) -> scores (B, S); ``prepared`` is ``keys`` itself."""
        return (keys @ query[:, :, None]).squeeze(-1)  # (B, S)


class ScaledDotScore(DotScore):
    """Scaled dot score: q . k / sqrt(d) (notes §4.3), the Transformer's choice."""

    def forward(self, query: Tensor, keys: Tensor, prepared: Tensor | None = None) -> Tensor:
        """query: (B, D), keys: (B, S, D) -> scores (B, S)."""
        return super().forward(query, keys) / math.sqrt(query.size(-1))  # (B, S)


class GeneralScore(nn.Module):
    """Luong general (bilinear) score: q^T W k."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.key = nn.Linear(key_dim, query_dim, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        """keys: (B, S, Dk) -> W k (B, S, Dq)."""
        return self.key(keys)

    def forward(self, query: Tensor, keys: Tensor, prepared: Tensor | None = None) -> Tensor:
        """query: (B, Dq), keys: (B, S, Dk), prepared: prepare(keys) or None -> scores (B, S)."""
        prepared = self.prepare(keys) if prepared is None else prepared  # (B, S, Dq)
        return (prepared @ query[:, :, None]).squeeze(-1)  # (B, S)


Score = Literal["additive", "dot", "general", "scaled_dot"]
SCORES: dict[str, type[nn.Module]] = {
    "additive": AdditiveScore,
    "dot": DotScore,
    "general": GeneralScore,
    "scaled_dot": ScaledDotScore,
}


def make_score(name: str, query_dim: int, key_dim: int, attn_dim: int) -> nn.Module:
    """Build a score function by name; every one maps (query (B, Dq), keys (B, S, Dk)) -> (B, S),
    optionally given ``prepared=score.prepare(keys)`` computed once per sequence."""
    if name not in SCORES:
        raise ValueError(f"score={name!r}; allowed: {', '.join(SCORES)}")
    return SCORES[name](query_dim, key_dim, attn_dim)


class Attention(nn.Module):
    """One query attends over a sequence: softmax of a named score, weighted sum of the keys."""

    def __init__(self, score: str, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.score = make_score(score, query_dim, key_dim, attn_dim)

    def prepare(self, keys: Tensor) -> Tensor:
        """The query-independent part of the score of keys (B, S, Dk): once per sequence."""
        return self.score.prepare(keys)

    def forward(
        self, query: Tensor, keys: Tensor, mask: Tensor, prepared: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """query: (B, Dq), keys: (B, S, Dk), mask: (B, S) True for real positions; ``prepared``
        is ``prepare(keys)`` when the caller kept it (a decoder attends once per step).

        Returns the context (B, Dk) and the weights (B, S), exactly 0 on padded positions.
        """
        scores = self.score(query, keys, prepared).masked_fill(~mask, float("-inf"))  # (B, S)
        weights = scores.softmax(dim=-1)  # (B, S)
        context = (weights[:, None] @ keys).squeeze(1)  # (B, Dk)
        return context, weights
