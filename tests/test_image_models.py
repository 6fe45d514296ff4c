"""Norm factory, ResNet and MLP: every registered combination builds, trains and evaluates."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.models.mlp import MLP
from attnlab.models.norms import FAMILY_NORMS, KINDS, NORMS, channels_per_group, make_norm
from attnlab.models.resnet import SHORTCUTS, UNITS, ResNet, Shortcut, stage_channels

COMBOS = list(itertools.product(UNITS, SHORTCUTS, NORMS))


def check_trains_and_evaluates(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """Right shape, finite loss, a gradient on every parameter, deterministic eval outputs."""
    logits = model(x)
    assert logits.shape == (x.size(0), num_classes)
    loss = F.cross_entropy(logits, torch.arange(x.size(0)) % num_classes)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("unit, shortcut, norm", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_resnet_combination(unit: str, shortcut: str, norm: str):
    torch.manual_seed(0)
    model = ResNet(in_channels=3, num_classes=7, depth=8, unit=unit, shortcut=shortcut, norm=norm)
    check_trains_and_evaluates(model, torch.randn(4, 3, 8, 8), 7)


@pytest.mark.parametrize("norm", FAMILY_NORMS["mlp"])
def test_mlp_norms(norm: str):
    torch.manual_seed(0)
    model = MLP(num_classes=5, in_channels=2, image_size=4, width=16, depth=2, norm=norm)
    check_trains_and_evaluates(model, torch.randn(6, 2, 4, 4), 5)


def test_models_expose_first_and_last_layer():
    resnet = ResNet(1, 10, depth=8)
    assert resnet.first_layer is resnet.stem[0] and isinstance(resnet.first_layer, nn.Conv2d)
    assert resnet.last_layer is resnet.head and resnet.head.out_features == 10
    flat = dict(in_channels=3, image_size=2, num_classes=3)  # 12 features
    mlp = MLP(**flat, width=8, depth=0)  # logistic regression
    assert mlp.first_layer is mlp.last_layer is mlp.head and mlp.head.in_features == 12
    assert MLP(**flat, width=8, width_multiplier=2).head.in_features == 16


def test_resnet20_has_the_papers_size():
    """He et al. 2016 report 0.27M parameters for ResNet-20 (projections add ~3k here)."""
    n_params = sum(p.numel() for p in ResNet(3, 10, depth=20).parameters())
    assert 0.27e6 <= n_params <= 0.28e6
    assert stage_channels(0.5) == (8, 16, 32)


@pytest.mark.parametrize("depth", [7, 9, 21, 2])
def test_depth_must_be_6n_plus_2(depth: int):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNet(1, 10, depth=depth)


def test_a_lesion_deletes_one_shape_keeping_block_and_puts_it_back():
    torch.manual_seed(0)
    model = ResNet(1, 10, depth=20, shortcut="identity").eval()
    # 3 blocks a stage; the first of stages 2 and 3 halves the map and doubles the channels
    assert model.deletable_blocks() == [0, 1, 2, 4, 5, 7, 8]
    x = torch.randn(4, 1, 8, 8)
    intact = model(x)
    with model.without_block(4):
        assert isinstance(model.blocks[4], nn.Identity)
        lesioned = model(x)
    assert not torch.equal(lesioned, intact)
    assert torch.equal(model(x), intact)  # the block is back
    with pytest.raises(ValueError, match="changes its input's shape"), model.without_block(3):
        pass


def test_plain_and_residual_nets_differ_only_in_the_shortcut():
    plain = ResNet(1, 10, depth=14, shortcut="none")
    residual = ResNet(1, 10, depth=14, shortcut="identity")
    projections = {n for n, _ in residual.named_parameters()} - {
        n for n, _ in plain.named_parameters()
    }
    assert projections and all(".shortcut.mapping." in n for n in projections)
    assert residual.load_state_dict(plain.state_dict(), strict=False).unexpected_keys == []


def test_shortcut_variants_combine_as_defined():
    x, r = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)

    def joined(kind: str, **kwargs) -> torch.Tensor:
        return Shortcut(kind, 4, 4, 1, None, **kwargs).eval()(x, r)

    torch.testing.assert_close(joined("identity"), x + r)
    torch.testing.assert_close(joined("none"), r)
    torch.testing.assert_close(joined("scaling", scale=0.3), 0.3 * x + r)
    both = joined("scaling", scale=0.5, residual_scale=0.5)  # He et al. 2016b's row that trains
    torch.testing.assert_close(both, 0.5 * x + 0.5 * r)
    torch.testing.assert_close(joined("identity", residual_scale=0.5), x + r)  # scaling's alone
    # He et al. 2016b: the shortcut is kept with p = 0.5, unscaled; in eval it is scaled by 0.5
    torch.testing.assert_close(joined("dropout", dropout=0.5), 0.5 * x + r)
    gated = Shortcut("gated", 4, 4, 1, None).eval()
    g = torch.sigmoid(gated.gate(x))
    torch.testing.assert_close(gated(x, r), (1 - g) * x + g * r)
    projection = Shortcut("projection", 4, 4, 1, None)
    assert isinstance(projection.mapping, nn.Conv2d)
    net = ResNet(1, 10, depth=8, shortcut="gated", gate_bias=-6.0)  # g = sigmoid(-6) at the start
    biases = [m.gate.bias for m in net.modules() if isinstance(m, Shortcut)]
    assert len(biases) == 3 and all(torch.equal(b, torch.full_like(b, -6.0)) for b in biases)
    with pytest.raises(ValueError, match="identity, projection"):
        Shortcut("highway", 4, 4, 1, None)


def test_batch_norm_in_eval_uses_running_statistics():
    torch.manual_seed(0)
    model = ResNet(1, 10, depth=8, norm="batch")
    for _ in range(3):
        model(torch.randn(8, 1, 8, 8) * 3 + 1)  # training mode: running stats move
    bn = model.stem[1]
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    model.eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        # Each image's output no longer depends on the rest of the batch.
        torch.testing.assert_close(model(x)[:2], model(x[:2]))
        stem = model.stem[0](x)
        expected = (stem - bn.running_mean[:, None, None]) / torch.sqrt(
            bn.running_var[:, None, None] + bn.eps
        ) * bn.weight[:, None, None] + bn.bias[:, None, None]
        torch.testing.assert_close(bn(stem), expected)


SHAPES = {"2d": (3, 8, 5, 5), "1d": (3, 8), "seq": (3, 6, 8)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NORMS)
def test_make_norm_keeps_the_shape(name: str, kind: str):
    x = torch.randn(*SHAPES[kind])
    if name == "instance" and kind == "1d":
        with pytest.raises(ValueError, match="instance"):
            make_norm(name, 8, kind=kind)
        return
    norm = make_norm(name, 8, groups=4, kind=kind)
    assert norm(x).shape == x.shape


def test_layer_and_instance_norm_are_the_extremes_of_group_norm():
    x = torch.randn(2, 6, 4, 4)
    layer, instance = make_norm("layer", 6), make_norm("instance", 6)
    torch.testing.assert_close(layer(x), F.layer_norm(x, x.shape[1:]))
    torch.testing.assert_close(instance(x), F.instance_norm(x), atol=1e-5, rtol=1e-5)
    sizes = {name: channels_per_group(make_norm(name, 6, groups=3)) for name in NORMS}
    assert sizes == {"batch": 1, "layer": 6, "instance": 1, "group": 2, "weight": 0, "none": 0}


def test_make_norm_rejects_bad_names_and_groups():
    with pytest.raises(ValueError, match="'spectral'.*batch, layer, instance, group, weight, none"):
        make_norm("spectral", 8)
    with pytest.raises(ValueError, match="groups=3 must divide channels=8"):
        make_norm("group", 8, groups=3)
    with pytest.raises(ValueError, match="kind"):
        make_norm("batch", 8, kind="3d")
