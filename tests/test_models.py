"""The Transformer's parts against PyTorch's reference modules, its masking properties and norms."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from torch import nn

from attnlab.core import registry
from attnlab.core.contracts import ImageDims, PairDims, SeriesDims, TaggingDims, TokenDims
from attnlab.models.attention import MultiHeadAttention
from attnlab.models.decoding import greedy_decode
from attnlab.models.norms import FAMILY_NORMS, SequenceBatchNorm
from attnlab.models.positional import positional_encoding
from attnlab.models.transformer import EncoderLayer, Seq2SeqTransformer

D, H = 32, 4
REGISTERED_MODELS = registry.components("model")
# Small sizes for whichever of these keys a model has.
SMALL = dict(width=16, heads=2, ff_width=32, emb_dim=8, width_multiplier=0.5, dropout=0.0)
PAIRS = PairDims(11, 9, pad_id=0, bos_id=1, eos_id=2, max_src_len=7, max_tgt_len=6)


def token_batch() -> tuple[torch.Tensor]:
    return (torch.randint(1, 11, (3, 7)),)


DUMMY_DATA = {  # dims, and a batch of inputs of that kind (B = 3)
    PairDims: (PAIRS, lambda: (torch.randint(3, 11, (3, 7)), torch.randint(3, 9, (3, 6)))),
    TokenDims: (TokenDims(11, 2, pad_id=0, max_src_len=7), token_batch),
    TaggingDims: (TaggingDims(11, 4, pad_id=0, max_src_len=7), token_batch),
    ImageDims: (ImageDims(1, 8, 3), lambda: (torch.randn(3, 1, 8, 8),)),
    SeriesDims: (SeriesDims(2, 10, 4, target_column=0), lambda: (torch.randn(3, 10, 2),)),
}


@pytest.mark.parametrize("component", REGISTERED_MODELS, ids=lambda c: c.name)
def test_every_registered_model_runs_forward_and_backward(component):
    """timm's habit: each model, built from its defaults and the data's sizes, gives finite
    outputs, and the gradient of its loss reaches every parameter."""
    torch.manual_seed(0)
    dims, inputs = DUMMY_DATA[component.data[0]]
    sizes = {k: v for k, v in SMALL.items() if k in component.config_keys}
    published = {
        f.name: getattr(dims, f.name) for f in fields(dims) if f.name in component.dims_params
    }
    model = component.target(**published, **sizes)
    output = model(*inputs())
    assert output.shape[0] == 3 and torch.isfinite(output).all()
    output.float().pow(2).mean().backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unreached


def copy_attention_weights(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """Load torch's packed in_proj into our separate q/k/v projections."""
    w_q, w_k, w_v = ref.in_proj_weight.detach().chunk(3)
    b_q, b_k, b_v = ref.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for proj, w, b in (
            (ours.q_proj, w_q, b_q),
            (ours.k_proj, w_k, b_k),
            (ours.v_proj, w_v, b_v),
        ):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        ours.out_proj.bias.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_attention_matches_torch(need_weights: bool):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H).eval()
    copy_attention_weights(ours, ref)
    q, kv = torch.randn(3, 5, D), torch.randn(3, 7, D)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True  # the first sequence has two padded keys
    expected, expected_weights = ref(
        q, kv, kv, key_padding_mask=padding, average_attn_weights=False
    )
    out, weights = ours(q, kv, kv, mask=~padding[:, None, None, :], need_weights=need_weights)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first: bool):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        D, H, dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    ours = EncoderLayer(D, H, d_ff=64, dropout=0.0, norm_first=norm_first).eval()
    copy_attention_weights(ours.self_attn, ref.self_attn)
    with torch.no_grad():
        ours.ffn.net[0].load_state_dict(ref.linear1.state_dict())
        ours.ffn.net[3].load_state_dict(ref.linear2.state_dict())
        ours.attn_block.norm.load_state_dict(ref.norm1.state_dict())
        ours.ffn_block.norm.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(2, 6, D)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    expected = ref(x, src_key_padding_mask=padding)
    out = ours(x, key_mask=~padding[:, None, None, :])
    # torch's fast path returns zeros at padded positions; compare the real ones.
    torch.testing.assert_close(out[~padding], expected[~padding], atol=1e-5, rtol=1e-5)


def tiny_transformer(**kwargs) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    options = dict(width=D, heads=H, depth=2, ff_width=64, dropout=0.0)
    options.update(kwargs)
    return Seq2SeqTransformer(src_vocab_size=20, tgt_vocab_size=12, **options).eval()


def test_decoder_is_causal():
    model = tiny_transformer()
    src = torch.randint(4, 20, (2, 7))
    tgt = torch.randint(4, 12, (2, 6))
    changed = tgt.clone()
    changed[:, 4:] = torch.randint(4, 12, (2, 2))
    # Changing tokens 4..5 may only change the logits at positions 4..5.
    torch.testing.assert_close(model(src, tgt)[:, :4], model(src, changed)[:, :4])
    assert not torch.allclose(model(src, tgt)[:, 4:], model(src, changed)[:, 4:])


def test_source_padding_is_ignored():
    model = tiny_transformer()
    src = torch.randint(4, 20, (1, 5))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    tgt = torch.randint(4, 12, (1, 4))
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


def test_without_positions_the_encoder_is_a_bag_of_tokens():
    """Notes §4.8: no positional encoding -> permuting the source permutes the encoder states."""
    model = tiny_transformer(positional="none")
    src = torch.randint(4, 20, (1, 6))
    perm = torch.randperm(6)
    states = model.encode(src).states
    torch.testing.assert_close(
        model.encode(src[:, perm]).states, states[:, perm], atol=1e-5, rtol=0
    )
    with_positions = tiny_transformer(positional="sinusoidal")
    moved = with_positions.encode(src[:, perm]).states
    assert not torch.allclose(moved, with_positions.encode(src).states[:, perm], atol=1e-3)


@pytest.mark.parametrize("norm", FAMILY_NORMS["transformer"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "none"])
@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_every_parameter_gets_a_gradient(
    norm: str, norm_first: bool, positional: str, tie_embeddings: bool
):
    model = tiny_transformer(
        norm_first=norm_first, positional=positional, tie_embeddings=tie_embeddings, norm=norm
    ).train()
    logits = model(torch.randint(1, 20, (3, 7)), torch.randint(1, 12, (3, 5)))
    assert logits.shape == (3, 5, 12)
    logits.logsumexp(-1).mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_sequence_batch_norm_statistics_ignore_padding():
    torch.manual_seed(0)
    bn = SequenceBatchNorm(D)
    x = torch.randn(3, 5, D) * 2 + 1
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    out = bn(x, mask)  # (B, T, D)
    real = x[mask]  # (7, D)
    expected = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + bn.norm.eps)
    torch.testing.assert_close(out[mask], expected, atol=1e-5, rtol=1e-5)
    assert out[~mask].abs().max() == 0
    torch.testing.assert_close(bn.norm.running_mean, 0.1 * real.mean(0))
    changed = x.clone()
    changed[~mask] = 100.0
    torch.testing.assert_close(bn(changed, mask), out)
    assert not torch.allclose(bn(changed), bn(x))  # without the mask padding would count
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(bn)  # what DDP's sync_batchnorm does
    torch.testing.assert_close(synced(changed, mask), synced(x, mask))


@pytest.mark.parametrize("norm_first", [False, True])
def test_batch_norm_transformer_ignores_padding_in_training(norm_first: bool):
    """Masked BatchNorm: in training, where batch statistics count, extra source or target
    padding and the values at padded positions leave the real positions' outputs unchanged."""
    model = tiny_transformer(norm="batch", norm_first=norm_first).train()
    src, tgt = torch.randint(4, 20, (3, 6)), torch.randint(4, 12, (3, 5))
    src[1, 4:], tgt[2, 3:] = 0, 0
    logits = model(src, tgt)  # (B, T, V)
    src_padded = torch.cat([src, torch.zeros(3, 2, dtype=torch.long)], dim=1)
    tgt_padded = torch.cat([tgt, torch.zeros(3, 2, dtype=torch.long)], dim=1)
    padded = model(src_padded, tgt_padded)[:, :5]
    real = tgt != 0  # (B, T)
    torch.testing.assert_close(padded[real], logits[real], atol=1e-5, rtol=1e-5)
    layer = EncoderLayer(D, H, d_ff=64, dropout=0.0, norm_first=norm_first, norm="batch")
    x, mask = torch.randn(3, 6, D), src != 0  # (B, S, D), (B, S)
    changed = x.masked_fill(~mask[..., None], 50.0)
    key_mask = mask[:, None, None, :]
    torch.testing.assert_close(layer(changed, key_mask)[mask], layer(x, key_mask)[mask])


def test_cross_attention_rows_are_distributions():
    model = tiny_transformer()
    src = torch.tensor([[5, 6, 7, 0, 0]])
    weights = model.cross_attention(src, torch.tensor([[1, 4, 5]]))  # (L, B, H, T, S)
    assert weights.shape == (2, 1, H, 3, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, H, 3))
    assert weights[..., 3:].abs().max() == 0  # padded source positions get no attention


def test_greedy_decode_stops_at_eos_and_pads_after():
    model = tiny_transformer()
    with torch.no_grad():  # make EOS (id 2) the best token everywhere after the first step
        model.generator.bias.zero_()
        model.generator.bias[2] = 50.0
    out = greedy_decode(
        model, torch.randint(4, 20, (3, 5)), bos_id=1, eos_id=2, pad_id=0, max_len=6
    )
    assert out.tolist() == [[2], [2], [2]]


def test_unknown_positional_encoding_is_rejected():
    with pytest.raises(ValueError, match="positional='rotary'"):
        positional_encoding("rotary", 8, 10)
