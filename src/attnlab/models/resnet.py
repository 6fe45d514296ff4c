"""CIFAR-style plain and residual networks (He et al. 2016; notes §5), one code path for both.

A net of depth 6n + 2 is a 3x3 stem conv, three stages of n two-conv blocks with 16, 32 and 64
channels (stride 2 at the start of stages 2 and 3), global average pooling and a linear head.
Each block computes ``shortcut(x, F(x))``; the ``shortcut`` name alone decides whether the net
is plain ("none") or residual, and which identity-path variant of notes §5.5.1 it uses:

- ``identity``: h(x) = x, a 1x1 projection only where the channels or the stride change
- ``projection``: h(x) = 1x1 conv on every block
- ``scaling``: lambda * h(x) + mu * F(x), lambda = ``shortcut_scale``, mu = ``residual_scale``
  (He et al. 2016b, Table 1: lambda = 0.5 with mu = 1 fails; both 0.5 trains, to 12.35%)
- ``gated``: (1 - g) * h(x) + g * F(x), g = sigmoid(1x1 conv(x)), its bias starting at
  ``gate_bias`` (He et al. 2016b, Fig. 2c and Table 1: b = 0 fails, b = -6 reaches 8.70%)
- ``dropout``: dropout(h(x)) with p = ``shortcut_dropout`` (inverted dropout, mean kept)
- ``none``: F(x) alone, the plain network

``norm`` is the norm layer after each conv (BN, LN, IN, GN; notes §6.3); ``weight`` puts an
Identity there and weight-normalises every conv instead (Salimans & Kingma 2016).

Units: ``v1`` is post-activation (conv-norm-relu-conv-norm, add, relu; notes res_block_v1),
``v2`` is pre-activation (norm-relu-conv-norm-relu-conv, add; notes res_block_v2) with a final
norm-relu before pooling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from attnlab.core.contracts import ImageDims
from attnlab.core.registry import Settings, register
from attnlab.models.norms import Norm, make_norm, weight_normalize

Unit = Literal["v1", "v2"]
ShortcutKind = Literal["identity", "projection", "scaling", "gated", "dropout", "none"]
UNITS, SHORTCUTS = get_args(Unit), get_args(ShortcutKind)
STAGE_CHANNELS = (16, 32, 64)

NormFactory = Callable[[int], nn.Module]  # channels -> norm layer


def stage_channels(width_multiplier: float = 1.0) -> tuple[int, ...]:
    """Channels of the three stages: 16, 32, 64 times ``width_multiplier``, at least 1."""
    return tuple(max(1, round(c * width_multiplier)) for c in STAGE_CHANNELS)


def blocks_per_stage(depth: int) -> int:
    """n of depth = 6n + 2 (two convs per block, three stages, stem conv and head)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth} must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, 110 ...)")
    return (depth - 2) // 6


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias)


class Shortcut(nn.Module):
    """Joins a block's input x (B, C_in, H, W) and its residual branch F(x) (B, C_out, H', W')."""

    def __init__(
        self,
        kind: str,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm: NormFactory | None,
        scale: float = 0.5,
        dropout: float = 0.5,
        residual_scale: float = 1.0,
        gate_bias: float = 0.0,
    ):
        super().__init__()
        if kind not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {kind!r}; one of {', '.join(SHORTCUTS)}")
        self.kind = kind
        reshapes = in_channels != out_channels or stride != 1
        self.mapping: nn.Module = nn.Identity()
        if kind == "projection" or (reshapes and kind != "none"):
            projection = conv1x1(in_channels, out_channels, stride)
            # v1 branches end in a norm, so the projection does too; v2 branches end in a conv.
            self.mapping = nn.Sequential(projection, norm(out_channels)) if norm else projection
        gated = kind == "gated"
        self.gate = conv1x1(in_channels, out_channels, stride, bias=True) if gated else None
        self.gate_bias = gate_bias
        self.keep = 1.0 - dropout if kind == "dropout" else 1.0
        self.scale = scale if kind == "scaling" else 1.0
        self.residual_scale = residual_scale if kind == "scaling" else 1.0

    def _drop(self, h: Tensor) -> Tensor:
        """He et al. 2016b's dropout shortcut: keep each unit with probability 1 - p and do *not*
        rescale, so the shortcut is scaled by 1 - p in expectation (in eval: exactly)."""
        if self.keep == 1.0:
            return h
        if not self.training:
            return h * self.keep
        return h * torch.bernoulli(torch.full_like(h, self.keep))

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        if self.kind == "none":
            return residual  # (B, C_out, H', W')
        shortcut = self.scale * self._drop(self.mapping(x))  # (B, C_out, H', W')
        if self.gate is None:
            if self.residual_scale != 1.0:
                residual = self.residual_scale * residual
            return shortcut + residual
        g = torch.sigmoid(self.gate(x))  # (B, C_out, H', W')
        return (1 - g) * shortcut + g * residual


class Block(nn.Module):
    """Two 3x3 convs and a shortcut; ``unit`` puts norm and ReLU after (v1) or before (v2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        unit: str,
        shortcut: str,
        norm: NormFactory,
        shortcut_scale: float,
        shortcut_dropout: float,
        residual_scale: float,
        gate_bias: float,
    ):
        super().__init__()
        if unit == "v1":
            self.residual = nn.Sequential(
                conv3x3(in_channels, out_channels, stride),
                norm(out_channels),
                nn.ReLU(inplace=True),
                conv3x3(out_channels, out_channels),
                norm(out_channels),
            )
        else:
            self.residual = nn.Sequential(
                norm(in_channels),
                nn.ReLU(),  # not in place: with norm "none" its input is x, read by the shortcut
                conv3x3(in_channels, out_channels, stride),
                norm(out_channels),
                nn.ReLU(inplace=True),
                conv3x3(out_channels, out_channels),
            )
        self.shortcut = Shortcut(
            shortcut,
            in_channels,
            out_channels,
            stride,
            norm if unit == "v1" else None,
            shortcut_scale,
            shortcut_dropout,
            residual_scale,
            gate_bias,
        )
        self.post = nn.ReLU(inplace=True) if unit == "v1" else nn.Identity()
        self.keeps_shape = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        return self.post(self.shortcut(x, self.residual(x)))


def check_resnet(c: Settings) -> None:
    """Depth 6n + 2, group counts that divide every stage, shortcut settings in range."""
    try:
        blocks_per_stage(c.depth)
    except ValueError:
        c.fail("depth", "6n + 2 (8, 14, 20, 32, 56, 110 ...)")
    c.positive("width_multiplier", "groups")
    channels = stage_channels(c.width_multiplier)
    if c.norm == "group" and any(ch % c.groups for ch in channels):
        allowed = f"a divisor of every stage's channels {list(channels)}"
        c.fail("groups", f"{allowed} (model.width_multiplier={c.width_multiplier})")
    c.non_negative("shortcut_scale", "residual_scale")
    c.fraction("shortcut_dropout")


@register("model", "resnet", check=check_resnet, data=(ImageDims,))
class ResNet(nn.Module):
    """CIFAR ResNet / plain net of depth 6n + 2 over images (B, C, H, W) -> logits (B, classes)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 20,
        unit: Unit = "v1",
        shortcut: ShortcutKind = "identity",
        norm: Norm = "batch",
        groups: int = 8,
        width_multiplier: float = 1.0,
        shortcut_scale: float = 0.5,
        shortcut_dropout: float = 0.5,
        residual_scale: float = 1.0,
        gate_bias: float = 0.0,
    ):
        super().__init__()
        n = blocks_per_stage(depth)
        self.norm_name = norm
        norm_layer = partial(make_norm, norm, groups=groups, kind="2d")
        channels = stage_channels(width_multiplier)
        stem: list[nn.Module] = [conv3x3(in_channels, channels[0])]
        if unit == "v1":
            stem += [norm_layer(channels[0]), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        blocks = []
        in_ch = channels[0]
        for stage, out_ch in enumerate(channels):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(
                    Block(
                        in_ch,
                        out_ch,
                        stride,
                        unit,
                        shortcut,
                        norm_layer,
                        shortcut_scale,
                        shortcut_dropout,
                        residual_scale,
                        gate_bias,
                    )
                )
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        final: list[nn.Module] = [norm_layer(in_ch), nn.ReLU(inplace=True)] if unit == "v2" else []
        self.final = nn.Sequential(*final)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_ch, num_classes)
        self.apply(init_weights)
        for module in self.modules():
            if isinstance(module, Shortcut) and module.gate is not None:
                nn.init.constant_(module.gate.bias, module.gate_bias)
        if norm == "weight":  # after the init: w = g v / ||v|| starts as the initialised w
            for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
                weight_normalize(conv)

    @property
    def first_layer(self) -> nn.Module:
        return self.stem[0]

    @property
    def last_layer(self) -> nn.Module:
        return self.head

    def deletable_blocks(self) -> list[int]:
        """The blocks whose output has their input's shape (stride 1, as many channels out as
        in): deleting one still leaves a net that runs."""
        return [i for i, block in enumerate(self.blocks) if block.keeps_shape]

    @contextmanager
    def without_block(self, index: int) -> Iterator[None]:
        """The net with block ``index`` replaced by the identity: Veit et al. 2016's lesion, which
        keeps a ResNet block's shortcut and drops its residual branch, and drops a plain net's
        layers with nothing in their place."""
        if index not in self.deletable_blocks():
            raise ValueError(f"block {index} changes its input's shape: {self.deletable_blocks()}")
        block = self.blocks[index]
        self.blocks[index] = nn.Identity()
        try:
            yield
        finally:
            self.blocks[index] = block

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)  # (B, 16w, H, W)
        h = self.blocks(h)  # (B, 64w, H / 4, W / 4)
        h = self.final(h)  # (B, 64w, H / 4, W / 4)
        h = self.pool(h).flatten(1)  # (B, 64w)
        return self.head(h)  # (B, num_classes)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU) with zero biases (a gate's bias is then set to its
    ``gate_bias``: at 0, g = sigmoid(gate) has mean 1/2).

    Norms (weight 1, bias 0) and the head keep PyTorch's defaults.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
