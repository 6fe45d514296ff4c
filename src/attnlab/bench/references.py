"""Plain PyTorch references that ``attnlab bench perf`` holds attnlab's models against.

Each is what a user would write without attnlab for the same computation: ``torch.nn.Transformer``
with embeddings and a generator; an RNN encoder-decoder and a Bahdanau attention seq2seq over
fused ``nn.GRU`` layers (packed sequences, the attention keys projected once per sequence);
a CIFAR ResNet written as one short class. Each seq2seq reference also decodes incrementally
(``start`` / ``step`` / ``reorder``): a key/value cache for the Transformer, the recurrent state
for the RNNs, so one new token costs O(T) work, not a pass over the whole prefix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD = 0


def sinusoid_table(length: int, d_model: int) -> Tensor:
    """(length, d_model) sin/cos positions of Vaswani et al. §3.5."""
    position = torch.arange(length)[:, None]  # (L, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table


class TorchTransformer(nn.Module):
    """``nn.Transformer`` (post-LN, batch first) between token embeddings and a generator."""

    def __init__(self, vocab: int, d_model: int, heads: int, layers: int, d_ff: int, max_len=512):
        super().__init__()
        self.d_model = d_model
        self.src_embed = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.register_buffer("pos", sinusoid_table(max_len, d_model), persistent=False)
        self.core = nn.Transformer(
            d_model, heads, layers, layers, d_ff, dropout=0.1, batch_first=True
        )
        self.generator = nn.Linear(d_model, vocab)

    def embed(self, tokens: Tensor, table: nn.Embedding, offset: int = 0) -> Tensor:
        """(B, T) -> (B, T, D) scaled embeddings plus positions offset..offset+T."""
        x = table(tokens) * math.sqrt(self.d_model)
        return x + self.pos[offset : offset + tokens.size(1)]

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src: (B, S), tgt_in: (B, T) -> logits (B, T, V)."""
        pad = src == PAD  # (B, S)
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), device=src.device)
        out = self.core(
            self.embed(src, self.src_embed),
            self.embed(tgt_in, self.tgt_embed),
            tgt_mask=causal,
            tgt_is_causal=True,
            src_key_padding_mask=pad,
            memory_key_padding_mask=pad,
        )  # (B, T, D)
        return self.generator(out)

    # incremental decoding with a key/value cache
    def start(self, src: Tensor) -> dict:
        """Encode once; project every decoder layer's cross-attention keys/values once."""
        pad = src == PAD
        memory = self.core.encoder(self.embed(src, self.src_embed), src_key_padding_mask=pad)
        state = {"t": 0, "keep": ~pad[:, None, None, :], "self": [], "cross": []}
        for layer in self.core.decoder.layers:
            _, k, v = _project(layer.multihead_attn, memory, memory)
            state["cross"].append((k, v))  # (B, H, S, Dh) each
            state["self"].append(None)
        return state

    def step(self, token: Tensor, state: dict) -> tuple[Tensor, dict]:
        """token: (B,) -> logits (B, V); the cache grows by one position per layer."""
        y = self.embed(token[:, None], self.tgt_embed, state["t"])  # (B, 1, D)
        caches = []
        for layer, cache, (ck, cv) in zip(
            self.core.decoder.layers, state["self"], state["cross"], strict=True
        ):
            q, k, v = _project(layer.self_attn, y, y)  # (B, H, 1, Dh)
            if cache is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)  # (B, H, t, Dh)
            caches.append((k, v))
            y = layer.norm1(y + _attend(layer.self_attn, q, k, v))
            q = _project(layer.multihead_attn, y, None)
            y = layer.norm2(y + _attend(layer.multihead_attn, q, ck, cv, state["keep"]))
            y = layer.norm3(y + layer.linear2(F.relu(layer.linear1(y))))
        y = self.core.decoder.norm(y)
        return self.generator(y[:, 0]), {**state, "t": state["t"] + 1, "self": caches}

    @staticmethod
    def reorder(state: dict, index: Tensor) -> dict:
        """Rows ``index`` of every cached tensor (beam search)."""

        def pick(pair: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
            return None if pair is None else (pair[0][index], pair[1][index])

        return {
            **state,
            "keep": state["keep"].index_select(0, index),
            "self": [pick(c) for c in state["self"]],
            "cross": [pick(c) for c in state["cross"]],
        }


def _project(attn: nn.MultiheadAttention, query: Tensor, kv: Tensor | None):
    """nn.MultiheadAttention's packed projections, split into heads (B, H, L, Dh)."""
    heads, d = attn.num_heads, attn.embed_dim
    w, b = attn.in_proj_weight, attn.in_proj_bias

    def split(x: Tensor) -> Tensor:
        return x.view(x.size(0), x.size(1), heads, d // heads).transpose(1, 2)

    q = split(F.linear(query, w[:d], b[:d]))
    if kv is None:
        return q
    return (
        q,
        split(F.linear(kv, w[d : 2 * d], b[d : 2 * d])),
        split(F.linear(kv, w[2 * d :], b[2 * d :])),
    )


def _attend(attn: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, keep=None) -> Tensor:
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, H, 1, Dh)
    return attn.out_proj(out.transpose(1, 2).flatten(2))  # (B, 1, D)


class GRUEncoder(nn.Module):
    """Bidirectional ``nn.GRU`` over the real tokens (packed); each direction width/2."""

    def __init__(self, vocab: int, emb: int, width: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.rnn = nn.GRU(emb, width // 2, batch_first=True, bidirectional=True)

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src: (B, S) -> states (B, S, H), mask (B, S), final state (B, H)."""
        mask = src != PAD
        packed = pack_padded_sequence(
            self.embed(src), mask.sum(1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, final = self.rnn(packed)  # final: (2, B, H/2)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        return states, mask, torch.cat([final[0], final[1]], dim=-1)


class TorchRNNSeq2Seq(nn.Module):
    """Fixed-context encoder-decoder: the decoder ``nn.GRU`` runs over the whole target at once,
    the encoder's final state c joined to every input."""

    def __init__(self, vocab: int, emb: int, width: int):
        super().__init__()
        self.encoder = GRUEncoder(vocab, emb, width)
        self.embed = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.rnn = nn.GRU(emb + width, width, batch_first=True)
        self.generator = nn.Linear(width, vocab)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        c = self.encoder(src)[2]  # (B, H)
        y = self.embed(tgt_in)  # (B, T, E)
        x = torch.cat([y, c[:, None].expand(-1, y.size(1), -1)], dim=-1)  # (B, T, E + H)
        out, _ = self.rnn(x, c[None].contiguous())  # (B, T, H)
        return self.generator(out)

    def start(self, src: Tensor) -> dict:
        c = self.encoder(src)[2]
        return {"c": c, "h": c[None].contiguous()}

    def step(self, token: Tensor, state: dict) -> tuple[Tensor, dict]:
        x = torch.cat([self.embed(token), state["c"]], dim=-1)[:, None]  # (B, 1, E + H)
        out, h = self.rnn(x, state["h"])
        return self.generator(out[:, 0]), {**state, "h": h}

    @staticmethod
    def reorder(state: dict, index: Tensor) -> dict:
        return {"c": state["c"].index_select(0, index), "h": state["h"].index_select(1, index)}


class TorchAttentionSeq2Seq(nn.Module):
    """Bahdanau attention over the bi-GRU states, a one-layer ``nn.GRU`` decoder stepped once per
    target token; the additive score's key projection W_k h is computed once per sequence."""

    def __init__(self, vocab: int, emb: int, width: int):
        super().__init__()
        self.encoder = GRUEncoder(vocab, emb, width)
        self.embed = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.w_query = nn.Linear(width, width, bias=False)
        self.w_key = nn.Linear(width, width)
        self.v = nn.Linear(width, 1, bias=False)
        self.rnn = nn.GRU(emb + width, width, batch_first=True)
        self.generator = nn.Linear(2 * width, vocab)

    def start(self, src: Tensor) -> dict:
        states, mask, final = self.encoder(src)
        return {"keys": states, "proj": self.w_key(states), "mask": mask, "h": final[None]}

    def step(self, token: Tensor, state: dict) -> tuple[Tensor, dict]:
        """token: (B,) -> logits (B, V): s_{t-1} attends, the GRU steps, [s_t; c_t] -> logits."""
        h = state["h"]  # (1, B, H)
        scores = self.v(torch.tanh(self.w_query(h[0])[:, None] + state["proj"]))[..., 0]  # (B, S)
        weights = scores.masked_fill(~state["mask"], float("-inf")).softmax(-1)  # (B, S)
        context = (weights[:, None] @ state["keys"])[:, 0]  # (B, H)
        x = torch.cat([self.embed(token), context], dim=-1)[:, None]  # (B, 1, E + H)
        out, h = self.rnn(x, h)  # (B, 1, H)
        return self.generator(torch.cat([out[:, 0], context], -1)), {**state, "h": h}

    @staticmethod
    def reorder(state: dict, index: Tensor) -> dict:
        out = {k: v.index_select(0, index) for k, v in state.items() if k != "h"}
        return {**out, "h": state["h"].index_select(1, index)}

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(src)
        logits = []
        for t in range(tgt_in.size(1)):
            step_logits, state = self.step(tgt_in[:, t], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, V)


def greedy(model: nn.Module, src: Tensor, bos: int, steps: int) -> Tensor:
    """Incremental greedy decoding of ``steps`` tokens: (B, S) -> (B, steps)."""
    state = model.start(src)
    token = torch.full((src.size(0),), bos, dtype=torch.long)
    out = []
    for _ in range(steps):
        logits, state = model.step(token, state)
        token = logits.argmax(-1)
        out.append(token)
    return torch.stack(out, 1)


def beam(model: nn.Module, src: Tensor, bos: int, steps: int, width: int) -> Tensor:
    """Incremental beam search (summed log-probabilities, no early stop): (B, S) -> (B, steps)."""
    batch = src.size(0)
    rows = torch.arange(batch)
    state = model.reorder(model.start(src), rows.repeat_interleave(width))
    token = torch.full((batch * width,), bos, dtype=torch.long)
    scores = torch.zeros(batch, width)
    scores[:, 1:] = float("-inf")
    history = torch.empty(batch * width, 0, dtype=torch.long)
    for _ in range(steps):
        logits, state = model.step(token, state)
        candidates = scores.view(-1, 1) + logits.log_softmax(-1)  # (Bk, V)
        vocab = candidates.size(-1)
        scores, flat = candidates.view(batch, -1).topk(width, dim=-1)  # (B, k)
        origin = (rows[:, None] * width + flat // vocab).view(-1)
        token = (flat % vocab).view(-1)
        history = torch.cat([history[origin], token[:, None]], 1)
        state = model.reorder(state, origin)
    return history.view(batch, width, -1)[rows, scores.argmax(-1)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PlainResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth 6n + 2 (16/32/64 channels), projection shortcuts where
    the shape changes: the architecture of attnlab's ``resnet`` with v1 units."""

    def __init__(self, depth: int, in_channels: int = 3, classes: int = 10):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage and not i else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(64, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))  # (B, classes)
