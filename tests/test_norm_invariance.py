"""Notes §6.4 on attnlab's own layers: which normalisations ignore the scale of the weights
and which the scale of the data.

- weight scale invariance: y = N(W x) is unchanged when W is multiplied by a constant, for batch,
  layer, instance and group norm (the statistics scale with W) and for weight norm (the
  direction v is divided by its own length);
- data scale invariance: N(W (c x)) = N(W x) for batch, layer, instance and group norm; weight
  norm does not normalise activations, so its output scales with the data.

Each case builds the layers the models build (the ResNet's bias-free 3x3 conv followed by
``make_norm``, whole ResNets, the weight-normalised LSTM), so a norm built wrong fails here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.models.norms import KINDS, make_norm, weight_normalize
from attnlab.models.recurrent_cells import make_rnn
from attnlab.models.resnet import ResNet, conv3x3

ACTIVATION_NORMS = ("batch", "layer", "instance", "group")  # normalise what the layer computes
SCALE = 7.0
TOLERANCE = dict(atol=1e-4, rtol=1e-4)  # the norms' eps (1e-5) against unit variances
# Whole nets: instance norm of the last stage's 2 x 2 maps pools 4 values, so eps weighs more.
WHOLE_NET = dict(atol=1e-3, rtol=1e-3)


def scale_weights(module: nn.Module, factor: float) -> None:
    """Multiply every conv/linear weight of ``module`` by ``factor``: a weight-normalised one
    through its direction v (the parameter an optimizer moves), norm gains and biases left."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]  # weight, weight_ih_l0, ... or a WN's original1 (v)
            if leaf == "original1" or (leaf.startswith("weight") and param.dim() > 1):
                param.mul_(factor)


def conv_and_norm(norm: str) -> nn.Sequential:
    """A ResNet conv3x3 (no bias) and the norm after it, as Block builds them; in training mode,
    where batch norm uses the batch's statistics."""
    torch.manual_seed(0)
    conv = conv3x3(4, 8)
    if norm == "weight":
        weight_normalize(conv)
    return nn.Sequential(conv, make_norm(norm, 8, groups=4, kind="2d")).train()


@pytest.mark.parametrize("norm", [*ACTIVATION_NORMS, "weight"])
def test_weight_scale_invariance(norm: str):
    block, x = conv_and_norm(norm), torch.randn(6, 4, 5, 5)
    before = block(x)
    scale_weights(block, SCALE)
    torch.testing.assert_close(block(x), before, **TOLERANCE)


@pytest.mark.parametrize("norm", ACTIVATION_NORMS)
def test_data_scale_invariance(norm: str):
    block, x = conv_and_norm(norm), torch.randn(6, 4, 5, 5)
    torch.testing.assert_close(block(SCALE * x), block(x), **TOLERANCE)


def test_weight_norm_is_not_data_scale_invariant():
    """w = g v / ||v|| is a fixed linear map: scaling the data scales the output."""
    block, x = conv_and_norm("weight"), torch.randn(6, 4, 5, 5)
    out = block(x)
    assert not torch.allclose(block(SCALE * x), out, **TOLERANCE)
    torch.testing.assert_close(block(SCALE * x), SCALE * out, **TOLERANCE)


def test_without_a_norm_neither_invariance_holds():
    """The control: the same conv with no norm after it follows both scales."""
    block, x = conv_and_norm("none"), torch.randn(6, 4, 5, 5)
    out = block(x)
    torch.testing.assert_close(block(SCALE * x), SCALE * out, **TOLERANCE)
    scale_weights(block, SCALE)
    torch.testing.assert_close(block(x), SCALE * out, **TOLERANCE)


SHAPES = {"2d": (6, 8, 5, 5), "1d": (6, 8), "seq": (6, 5, 8)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", ACTIVATION_NORMS)
def test_every_layout_of_an_activation_norm_ignores_the_data_scale(norm: str, kind: str):
    """The same for the feature-vector and sequence layouts that MLPs, conv stacks and
    Transformers get from make_norm (instance norm has no 1d form)."""
    if norm == "instance" and kind == "1d":
        return
    torch.manual_seed(0)
    layer = make_norm(norm, 8, groups=2, kind=kind).train()
    h = 2 * torch.randn(*SHAPES[kind])  # variances well above the norms' eps
    torch.testing.assert_close(layer(SCALE * h), layer(h), **TOLERANCE)


def resnet(norm: str) -> ResNet:
    torch.manual_seed(0)
    return ResNet(in_channels=1, num_classes=5, depth=8, unit="v1", norm=norm).train()


@pytest.mark.parametrize("norm", [*ACTIVATION_NORMS, "weight"])
def test_a_whole_resnet_ignores_the_scale_of_its_conv_weights(norm: str):
    """v1 units: every conv (stem, residual branches, projections) is followed by its norm, or is
    weight-normalised, so scaling all of them leaves the logits unchanged."""
    model, x = resnet(norm), torch.randn(6, 1, 8, 8)
    before = model(x)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        scale_weights(conv, SCALE)
    torch.testing.assert_close(model(x), before, **WHOLE_NET)


@pytest.mark.parametrize("norm", ACTIVATION_NORMS)
def test_a_whole_resnet_ignores_the_scale_of_its_input(norm: str):
    model, x = resnet(norm), torch.randn(6, 1, 8, 8)
    torch.testing.assert_close(model(SCALE * x), model(x), **WHOLE_NET)


@pytest.mark.parametrize("norm", ["weight", "none"])
def test_a_resnet_without_activation_norms_follows_the_input_scale(norm: str):
    model, x = resnet(norm), torch.randn(6, 1, 8, 8)
    assert not torch.allclose(model(SCALE * x), model(x), **WHOLE_NET)


def test_weight_normalised_lstm_ignores_the_scale_of_v_and_follows_g():
    """make_rnn(norm="weight"): torch's LSTM reads w = g v / ||v|| at every call."""
    torch.manual_seed(0)
    rnn = make_rnn("lstm", 4, 6, layers=2, dropout=0.0, bidirectional=True, norm="weight")
    x = torch.randn(3, 5, 4)
    out = rnn(x)[0]
    scale_weights(rnn, SCALE)
    torch.testing.assert_close(rnn(x)[0], out, **TOLERANCE)
    with torch.no_grad():
        rnn.parametrizations.weight_hh_l1.original0.mul_(2.0)  # the gains g are live
    assert not torch.allclose(rnn(x)[0], out, **TOLERANCE)
