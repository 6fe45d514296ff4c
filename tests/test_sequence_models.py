"""Every seq2seq model x every score function, every classifier, beam search, receptive fields,
normalised recurrent cells."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers.stand_ins import LogitsOnly
from torch import nn

from attnlab.models.attention import SCORES, Attention, make_score
from attnlab.models.conv import ConvClassifier, ConvEncoderAttentionDecoder, ConvStack
from attnlab.models.decoding import batch_select, beam_search, greedy_decode
from attnlab.models.recurrent_cells import GateNorm, NormLSTMCell, make_rnn
from attnlab.models.rnn import AttentionSeq2Seq, RNNClassifier, RNNEncoderDecoder
from attnlab.models.transformer import Seq2SeqTransformer, TransformerClassifier

SRC_V, TGT_V, PAD = 20, 12, 0
SMALL = dict(emb_dim=8, width=16, dropout=0.0)

# name -> (class, hyperparameters); models with a ``score`` are built once per score function
# unless their entry fixes one (the norm variants: the norm does not meet the score).
SEQ2SEQ_MODELS = {
    "rnn_gru": (RNNEncoderDecoder, dict(SMALL, cell="gru")),
    "rnn_lstm_2layers_unidirectional": (
        RNNEncoderDecoder,
        dict(SMALL, cell="lstm", depth=2, bidirectional=False),
    ),
    "attention_gru": (AttentionSeq2Seq, dict(SMALL, cell="gru")),
    "attention_lstm_2layers": (AttentionSeq2Seq, dict(SMALL, cell="lstm", depth=2)),
    "rnn_lstm_layernorm_2layers": (
        RNNEncoderDecoder,
        dict(SMALL, cell="lstm", depth=2, norm="layer"),
    ),
    "rnn_gru_batchnorm": (RNNEncoderDecoder, dict(SMALL, cell="gru", norm="batch")),
    "attention_gru_layernorm": (
        AttentionSeq2Seq,
        dict(SMALL, cell="gru", norm="layer", score="general"),
    ),
    "attention_lstm_batchnorm_2layers": (
        AttentionSeq2Seq,
        dict(SMALL, cell="lstm", depth=2, norm="batch", score="additive"),
    ),
    "conv_attention": (
        ConvEncoderAttentionDecoder,
        dict(emb_dim=8, width=16, kernel=3, dilation=2, depth=3, dropout=0.0),
    ),
    "conv_attention_weightnorm": (
        ConvEncoderAttentionDecoder,
        dict(emb_dim=8, width=16, kernel=3, dilation=2, depth=2, dropout=0.0, norm="weight"),
    ),
    "conv_attention_layernorm": (
        ConvEncoderAttentionDecoder,
        dict(emb_dim=8, width=16, kernel=3, dilation=2, depth=2, dropout=0.0, norm="layer"),
    ),
    "transformer": (
        Seq2SeqTransformer,
        dict(width=16, heads=2, depth=1, ff_width=32, dropout=0.0),
    ),
    "transformer_batchnorm_prenorm": (
        Seq2SeqTransformer,
        dict(
            width=16,
            heads=2,
            depth=1,
            ff_width=32,
            dropout=0.0,
            norm="batch",
            norm_first=True,
        ),
    ),
    "transformer_no_norm": (
        Seq2SeqTransformer,
        dict(width=16, heads=2, depth=1, ff_width=32, dropout=0.0, norm="none"),
    ),
}
CLASSIFIERS = {
    "rnn_lstm_last": (RNNClassifier, dict(SMALL, cell="lstm")),
    "rnn_bigru_mean": (RNNClassifier, dict(SMALL, cell="gru", bidirectional=True, pooling="mean")),
    "rnn_bilstm_layernorm_mean": (
        RNNClassifier,
        dict(SMALL, cell="lstm", bidirectional=True, pooling="mean", norm="layer"),
    ),
    "rnn_gru_batchnorm_2layers_last": (
        RNNClassifier,
        dict(SMALL, cell="gru", depth=2, bidirectional=True, norm="batch"),
    ),
    "conv_causal": (ConvClassifier, dict(width=16, kernel=3, dilation=2, depth=3, dropout=0.0)),
    "conv_causal_batchnorm": (
        ConvClassifier,
        dict(width=16, kernel=3, dilation=2, depth=2, dropout=0.0, norm="batch"),
    ),
    "rnn_lstm_weightnorm_2layers_mean": (
        RNNClassifier,
        dict(SMALL, cell="lstm", depth=2, bidirectional=True, pooling="mean", norm="weight"),
    ),
    "conv_causal_weightnorm": (
        ConvClassifier,
        dict(width=16, kernel=3, dilation=2, depth=2, dropout=0.0, norm="weight"),
    ),
    "conv_plain": (
        ConvClassifier,
        dict(width=16, kernel=2, dilation=1, depth=2, causal=False, residual=False, dropout=0.0),
    ),
    "transformer_mean": (
        TransformerClassifier,
        dict(width=16, heads=2, depth=1, ff_width=32, dropout=0.0),
    ),
    "transformer_batchnorm_mean": (
        TransformerClassifier,
        dict(width=16, heads=2, depth=1, ff_width=32, dropout=0.0, norm="batch"),
    ),
    "transformer_causal_last": (
        TransformerClassifier,
        dict(width=16, heads=2, depth=2, ff_width=32, dropout=0.0, causal=True, pooling="last"),
    ),
    "transformer_cls_learned_prenorm": (
        TransformerClassifier,
        dict(
            width=16,
            heads=2,
            depth=1,
            ff_width=32,
            dropout=0.0,
            pooling="first",
            positional="learned",
            norm_first=True,
        ),
    ),  # fmt: skip
}


def takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls).parameters


SEQ2SEQ_CASES = [
    pytest.param(cls, dict(kwargs, score=score), id=f"{name}-{score}")
    for name, (cls, kwargs) in SEQ2SEQ_MODELS.items()
    if takes(cls, "score") and "score" not in kwargs
    for score in SCORES
] + [
    pytest.param(cls, kwargs, id=name)
    for name, (cls, kwargs) in SEQ2SEQ_MODELS.items()
    if not takes(cls, "score") or "score" in kwargs
]
CLASSIFIER_CASES = [
    pytest.param(cls, kwargs, id=name) for name, (cls, kwargs) in CLASSIFIERS.items()
]


def build(cls: type, kwargs: dict) -> nn.Module:
    """The model, seeded; models with BatchNorm have seen a few training batches, so that eval
    does not meet running estimates still at their initial (0, 1)."""
    torch.manual_seed(0)
    if takes(cls, "num_classes"):
        model = cls(vocab_size=SRC_V, num_classes=3, pad_id=PAD, **kwargs)
        inputs = (torch.randint(1, SRC_V, (8, 7)),)
    else:
        model = cls(src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, pad_id=PAD, **kwargs)
        inputs = (torch.randint(1, SRC_V, (8, 7)), torch.randint(1, TGT_V, (8, 6)))
    if any(name.endswith("running_mean") for name, _ in model.named_buffers()):
        with torch.no_grad():
            for _ in range(3):
                model.train()(*inputs)
    return model


def assert_every_parameter_learns(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls, kwargs", SEQ2SEQ_CASES)
def test_seq2seq_shape_loss_and_gradients(cls, kwargs):
    model = build(cls, kwargs).train()
    src, tgt = torch.randint(1, SRC_V, (3, 7)), torch.randint(1, TGT_V, (3, 5))
    src[0, 5:] = PAD
    logits = model(src, tgt)
    assert logits.shape == (3, 5, TGT_V)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), torch.randint(1, TGT_V, (15,)))
    assert torch.isfinite(loss)
    loss.backward()
    assert_every_parameter_learns(model)


@pytest.mark.parametrize("cls, kwargs", SEQ2SEQ_CASES)
def test_seq2seq_decoder_is_causal(cls, kwargs):
    model = build(cls, kwargs).eval()
    src, tgt = torch.randint(1, SRC_V, (2, 6)), torch.randint(1, TGT_V, (2, 6))
    changed = tgt.clone()
    changed[:, 4:] = (tgt[:, 4:] % (TGT_V - 1)) + 1  # different real tokens
    # Changing tokens 4..5 may only change the logits at positions 4..5.
    torch.testing.assert_close(model(src, tgt)[:, :4], model(src, changed)[:, :4])
    assert not torch.allclose(model(src, tgt)[:, 4:], model(src, changed)[:, 4:])


@pytest.mark.parametrize("cls, kwargs", SEQ2SEQ_CASES)
def test_seq2seq_ignores_source_padding(cls, kwargs):
    model = build(cls, kwargs).eval()
    src = torch.randint(1, SRC_V, (2, 5))
    padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    tgt = torch.randint(1, TGT_V, (2, 4))
    torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls, kwargs", SEQ2SEQ_CASES)
def test_beam_width_1_is_greedy(cls, kwargs):
    model = build(cls, kwargs).eval()
    src = torch.randint(1, SRC_V, (4, 6))
    src[1, 4:] = PAD
    args = (model, src, 1, 2, PAD, 7)
    greedy = greedy_decode(*args)
    assert torch.equal(beam_search(*args, width=1), greedy)
    wide = beam_search(*args, width=3, length_penalty=0.6)
    assert wide.size(0) == 4 and wide.size(1) <= 7


def test_beam_search_finds_a_better_sequence_than_greedy():
    """A toy decoder where the greedy first step leads into a worse continuation."""

    class Toy(nn.Module):
        def encode(self, src):
            return src

        def decode(self, tgt_in, memory):
            log_p = torch.full((tgt_in.size(0), tgt_in.size(1), 4), -20.0)  # (B, T, V)
            log_p[:, 0, 3] = torch.tensor(0.6).log()  # first token 3 (greedy) ...
            log_p[:, 0, 1] = torch.tensor(0.4).log()
            if tgt_in.size(1) > 1:
                after_3 = tgt_in[:, 1] == 3  # ... but after 3, EOS (2) is uncertain
                log_p[after_3, 1, 2] = torch.tensor(0.3).log()
                log_p[after_3, 1, 1] = torch.tensor(0.35).log()
                log_p[after_3, 1, 3] = torch.tensor(0.35).log()
                log_p[~after_3, 1, 2] = 0.0  # after 1, EOS is certain
            log_p[:, 2:, 2] = 0.0
            return log_p

    src = torch.zeros(1, 1, dtype=torch.long)
    assert greedy_decode(Toy(), src, 0, 2, 0, 3)[0, 0] == 3
    assert beam_search(Toy(), src, 0, 2, 0, 3, width=2).tolist() == [[1, 2, 0]]


@pytest.mark.parametrize("width", [0, -1])
def test_beam_width_below_1_is_rejected(width):
    model = build(*SEQ2SEQ_MODELS["attention_gru"]).eval()
    with pytest.raises(ValueError, match=f"width={width}"):
        beam_search(model, torch.randint(1, SRC_V, (1, 3)), 1, 2, PAD, 4, width=width)


def test_batch_select_handles_tensors_tuples_and_dataclasses():
    @dataclasses.dataclass
    class Memory:
        states: torch.Tensor
        state: tuple
        note: str = "kept"

    memory = Memory(torch.arange(3)[:, None], (torch.arange(3), torch.arange(3) * 10))
    picked = batch_select(memory, torch.tensor([2, 2, 0]))
    assert picked.states[:, 0].tolist() == [2, 2, 0]
    assert picked.state[1].tolist() == [20, 20, 0]
    assert picked.note == "kept"


@pytest.mark.parametrize("cls, kwargs", CLASSIFIER_CASES)
def test_classifier_shape_gradients_and_padding(cls, kwargs):
    model = build(cls, kwargs).train()
    tokens = torch.randint(1, SRC_V, (4, 9))
    tokens[0, 6:] = PAD
    logits = model(tokens)
    assert logits.shape == (4, 3)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert_every_parameter_learns(model)
    model.eval()
    padded = torch.cat([tokens, torch.full((4, 3), PAD)], dim=1)
    torch.testing.assert_close(model(tokens), model(padded), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls, kwargs", SEQ2SEQ_CASES + CLASSIFIER_CASES)
def test_eval_is_deterministic_and_per_example(cls, kwargs):
    """Eval outputs repeat exactly, and one example's output does not depend on the rest of the
    batch (BatchNorm variants: running statistics, not the batch's)."""
    model = build(cls, kwargs).eval()
    src, tgt = torch.randint(1, SRC_V, (4, 6)), torch.randint(1, TGT_V, (4, 5))
    src[1, 4:] = PAD
    inputs = (src,) if takes(cls, "num_classes") else (src, tgt)
    with torch.no_grad():
        out = model(*inputs)
        torch.testing.assert_close(model(*inputs), out, rtol=0, atol=0)
        alone = model(*(x[1:2] for x in inputs))
    torch.testing.assert_close(alone, out[1:2], atol=1e-5, rtol=1e-5)


def test_ln_lstm_normalises_each_gate_block_and_ignores_weight_scale():
    """Ba et al. 2016: each term's gate pre-activations are standardised before gain and bias,
    so the cell's output does not change when W_ih or W_hh is rescaled."""
    torch.manual_seed(0)
    cell = NormLSTMCell(5, 8, "layer")
    seen = {}
    for name in ("norm_ih", "norm_hh", "norm_c"):
        getattr(cell, name).register_forward_hook(lambda m, a, out, n=name: seen.update({n: out}))
    x, h, c = torch.randn(3, 5) * 3, torch.randn(3, 8) * 3, torch.randn(3, 8)  # var >> eps
    real = torch.ones(3, dtype=torch.bool)
    h1, c1 = cell(x @ cell.weight_ih.T, (h, c), real)
    for name, gates in (("norm_ih", 4), ("norm_hh", 4), ("norm_c", 1)):
        blocks = seen[name].unflatten(-1, (gates, 8))  # gain 1, bias 0 at init: (B, G, H)
        torch.testing.assert_close(blocks.mean(-1), torch.zeros(3, gates), atol=1e-5, rtol=0)
        std = blocks.std(-1, unbiased=False)  # 1 up to LayerNorm's eps
        torch.testing.assert_close(std, torch.ones(3, gates), atol=1e-3, rtol=0)
    with torch.no_grad():
        cell.weight_ih.mul_(7.0)
        cell.weight_hh.mul_(3.0)
    h2, c2 = cell(x @ cell.weight_ih.T, (h, c), real)
    torch.testing.assert_close((h2, c2), (h1, c1), atol=1e-3, rtol=0)  # up to eps


def test_recurrent_batch_norm_uses_batch_statistics_in_training_running_ones_in_eval():
    torch.manual_seed(0)
    norm = GateNorm("batch", gates=2, hidden=3, bias=False)
    x = torch.randn(6, 6) * 2 + 1
    real = torch.tensor([True] * 4 + [False] * 2)  # two finished sequences
    out = norm(x, real) / norm.weight  # training: this step's real rows, gain divided out
    torch.testing.assert_close(out[real].mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[real].std(0, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    changed = x.clone()
    changed[~real] = 100.0  # finished rows reach neither the outputs nor the running estimates
    torch.testing.assert_close(norm(changed, real)[real], norm(x, real)[real])
    kept = 0.9**3  # three training calls so far, each moving the estimates by momentum 0.1
    expected_mean = (1 - kept) * x[real].mean(0)  # from 0
    expected_var = kept + (1 - kept) * x[real].var(0)  # from 1; unbiased, as torch's BN keeps
    torch.testing.assert_close(norm.running_mean, expected_mean)
    torch.testing.assert_close(norm.running_var, expected_var)
    norm.eval()
    running = (x - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight
    torch.testing.assert_close(norm(x, real), running)
    torch.testing.assert_close(norm(x[:1], real[:1]), running[:1])  # per example
    # The same through a whole recurrent layer: in training an example depends on its batch.
    rnn = make_rnn("lstm", 4, 5, 1, 0.0, False, norm="batch")
    seqs = torch.randn(3, 6, 4)
    assert not torch.allclose(rnn(seqs)[0][:1], rnn(seqs[:1].expand(3, -1, -1))[0][:1])
    rnn.eval()
    torch.testing.assert_close(rnn(seqs)[0][:1], rnn(seqs[:1])[0])


@pytest.mark.parametrize("name", SCORES)
def test_attention_weights_are_distributions_with_zero_on_padding(name):
    torch.manual_seed(0)
    attention = Attention(name, query_dim=8, key_dim=8, attn_dim=6)
    keys, mask = torch.randn(2, 5, 8), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    context, weights = attention(torch.randn(2, 8), keys, mask)
    assert context.shape == (2, 8) and weights.shape == (2, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert weights[1, 3:].abs().max() == 0
    torch.testing.assert_close(context, (weights[..., None] * keys).sum(1))


def test_scores_compute_their_formulas():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4), torch.randn(2, 3, 4)
    dot = (k * q[:, None]).sum(-1)  # (B, S)
    torch.testing.assert_close(make_score("dot", 4, 4, 4)(q, k), dot)
    torch.testing.assert_close(make_score("scaled_dot", 4, 4, 4)(q, k), dot / 2)
    general = make_score("general", 4, 4, 4)
    torch.testing.assert_close(
        general(q, k), torch.einsum("bd,de,bse->bs", q, general.key.weight, k)
    )
    additive = make_score("additive", 4, 4, 5)
    expected = additive.v(torch.tanh(additive.query(q)[:, None] + additive.key(k))).squeeze(-1)
    torch.testing.assert_close(additive(q, k), expected)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="score='cosine'.*additive, dot, general, scaled_dot"):
        make_score("cosine", 4, 4, 4)
    with pytest.raises(ValueError, match="cell='rnn'"):
        make_rnn("rnn", 4, 4, 1, 0.0, False)
    with pytest.raises(ValueError, match="norm='group'.*batch, layer, weight, none"):
        make_rnn("lstm", 4, 4, 1, 0.0, False, norm="group")
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        make_score("dot", 4, 6, 4)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kernel, dilation, depth", [(3, 1, 3), (2, 2, 4), (3, 2, 3), (5, 3, 2)])
def test_receptive_field_matches_gradient_reach(kernel, dilation, depth, causal):
    """The output at the last position has nonzero gradient exactly on its receptive field."""
    torch.manual_seed(0)
    stack = ConvStack(8, kernel, dilation, depth, causal, residual=True, dropout=0.0)
    length = stack.receptive_field + 10
    x = torch.randn(1, length, 8, requires_grad=True)
    position = length - 1 if causal else length // 2
    stack(x, torch.ones(1, length, dtype=torch.bool))[0, position].sum().backward()
    reached = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert len(reached) == stack.receptive_field
    assert reached == list(range(reached[0], reached[0] + stack.receptive_field))
    if causal:
        assert reached[-1] == position


def test_conv_classifier_is_blind_beyond_its_receptive_field():
    model = build(*CLASSIFIERS["conv_causal"]).eval()  # kernel 3, dilation 2, depth 3 -> 15
    assert model.receptive_field == 15
    tokens = torch.randint(1, SRC_V, (1, 30))
    changed = tokens.clone()
    changed[0, : 30 - 15] = torch.randint(1, SRC_V, (15,))  # everything out of reach
    torch.testing.assert_close(model(tokens), model(changed))
    changed[0, 30 - 15] = tokens[0, 30 - 15] % (SRC_V - 1) + 1  # the first token in reach
    assert not torch.allclose(model(tokens), model(changed))


def test_causal_transformer_classifier_reads_left_to_right_and_at_the_last_token():
    """Causal: the state at t is the last state of the sequence cut after t, whatever follows;
    pooled at the last real token, right padding changes nothing. Not causal: it would."""
    model = build(*CLASSIFIERS["transformer_causal_last"]).eval()
    tokens = torch.randint(1, SRC_V, (2, 9))
    states = model.encode(tokens).states  # (2, 9, 16)
    for t in (0, 4, 8):
        torch.testing.assert_close(states[:, t], model.encode(tokens[:, : t + 1]).last)
    padded = F.pad(tokens[:, :6], (0, 3), value=PAD)
    torch.testing.assert_close(model(padded), model(tokens[:, :6]))
    model.causal = False
    assert not torch.allclose(model.encode(tokens).states[:, 4], model.encode(tokens[:, :5]).last)


def test_attention_model_exposes_cross_attention_for_plots():
    model = build(*SEQ2SEQ_MODELS["attention_gru"]).eval()
    src = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    weights = model.cross_attention(src, torch.tensor([[1, 4, 5], [1, 4, 5]]))
    assert weights.shape == (1, 2, 1, 3, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, 1, 3))
    assert weights[0, 0, ..., 3:].abs().max() == 0


def test_bleu_words_stop_at_eos_and_skip_padding():
    from attnlab.tasks.seq2seq import Seq2SeqTask

    task = Seq2SeqTask(
        nn.Linear(1, 1), torch.optim.SGD, pad_id=0, bos_id=1, eos_id=2, tgt_vocab_size=9,
        max_tgt_len=5,
    )  # fmt: skip
    words = task._words(torch.tensor([[5, 6, 2, 7, 0], [4, 0, 0, 0, 0]]))
    assert words == ["5 6", "4"]
    perfect = task.bleu["test"](["5 6 7 8"], [["5 6 7 8"]])
    assert perfect.item() == pytest.approx(1.0)


def test_token_accuracy_exact_match_and_bleu_are_logged_per_source_length_bucket(monkeypatch):
    import lightning.pytorch as L

    from attnlab.data.seq2seq import Seq2SeqBatch
    from attnlab.tasks.seq2seq import Seq2SeqTask

    task = Seq2SeqTask(
        LogitsOnly(TGT_V), torch.optim.SGD, pad_id=PAD, bos_id=1, eos_id=2, tgt_vocab_size=TGT_V,
        max_tgt_len=8, length_buckets=[4, 10],
    )  # fmt: skip
    src = torch.tensor([[5, 6, 0, 0, 0, 0], [5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 0]])
    tgt_out = torch.tensor([[3, 4, 5, 6, 7, 2], [4, 5, 6, 7, 8, 2], [5, 6, 7, 8, 9, 2]])
    batch = Seq2SeqBatch(src=src, tgt_in=torch.ones_like(tgt_out), tgt_out=tgt_out)
    wrong_first_token = tgt_out.clone()
    wrong_first_token[2, 0] = 10  # the one source of length 4-9 gets 1 of its 6 tokens wrong
    monkeypatch.setattr(task, "predict_ids", lambda src: wrong_first_token)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader([batch], batch_size=None)  # the one batch as it is
    (logged,) = trainer.test(task, dataloaders=loader, verbose=False)
    assert logged["test/exact_match_by_len/lt4"] == 1.0
    assert logged["test/exact_match_by_len/4-9"] == 0.0
    assert logged["test/token_acc_by_len/lt4"] == 1.0
    assert logged["test/token_acc_by_len/4-9"] == pytest.approx(5 / 6)
    assert logged["test/bleu_by_len/lt4"] == pytest.approx(1.0)
    assert 0.0 < logged["test/bleu_by_len/4-9"] < 1.0
    assert "test/exact_match_by_len/ge10" not in logged  # no source that long: no value
    assert logged["test/exact_match"] == pytest.approx(2 / 3)  # the overall metrics stay


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_without_positions_a_mean_pooled_encoder_is_blind_to_word_order(norm_first):
    """Notes §4.8: self-attention, the feed-forward layers and mean pooling treat a sequence as
    a bag of tokens, so without positions any reordering gives the same logits ("does A come
    before B?" is then at chance by construction); sinusoidal positions tell the orders apart."""
    tokens = torch.randint(1, SRC_V, (6, 11))
    reordered = torch.stack([row[torch.randperm(len(row))] for row in tokens])
    logits = {}
    for positional in ("none", "sinusoidal"):
        torch.manual_seed(0)
        model = TransformerClassifier(
            vocab_size=SRC_V, num_classes=2, pad_id=PAD, width=32, heads=4, ff_width=64,
            dropout=0.0, norm_first=norm_first, positional=positional,
        ).eval()  # fmt: skip
        with torch.no_grad():
            logits[positional] = model(tokens), model(reordered)
    torch.testing.assert_close(*logits["none"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(*logits["sinusoidal"], atol=1e-3)
