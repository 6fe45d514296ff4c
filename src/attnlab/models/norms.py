"""Normalization layers chosen by name (notes §6): batch, layer, instance, group or none.

One signature for every layout a model hands over:

- ``"2d"``: conv feature maps (B, C, H, W)
- ``"1d"``: feature vectors (B, C)
- ``"seq"``: sequences, channels last (B, T, C)

Layer and instance norm of feature maps are GroupNorm with 1 and C groups: the two extremes
of group norm (notes §6.3.4), so the four norms differ only in which values share statistics.
"""

from __future__ import annotations

from torch import Tensor, nn

NORMS = ("batch", "layer", "instance", "group", "none")
KINDS = ("2d", "1d", "seq")


class ChannelsLast(nn.Module):
    """Apply a channels-first norm (B, C, T) to a channels-last sequence (B, T, C)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)


def make_norm(name: str, channels: int, *, groups: int = 1, kind: str = "2d") -> nn.Module:
    """A norm layer over ``channels`` for inputs of layout ``kind``; ``groups`` is for "group"."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; one of {', '.join(NORMS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; one of {', '.join(KINDS)}")
    if name == "group" and (groups < 1 or channels % groups):
        raise ValueError(f"groups={groups} must divide channels={channels}")
    if name == "none":
        return nn.Identity()
    if name == "instance" and kind == "1d":
        raise ValueError("instance norm needs a spatial or time axis; kind '1d' has none")
    if kind == "2d":
        if name == "batch":
            return nn.BatchNorm2d(channels)
        n_groups = {"layer": 1, "instance": channels, "group": groups}[name]
        return nn.GroupNorm(n_groups, channels)
    if name == "layer":
        return nn.LayerNorm(channels)
    if name == "batch":
        norm = nn.BatchNorm1d(channels)
    elif name == "instance":
        norm = nn.InstanceNorm1d(channels, affine=True)
    else:
        norm = nn.GroupNorm(groups, channels)
    return ChannelsLast(norm) if kind == "seq" else norm


def channels_per_group(norm: nn.Module) -> int:
    """How many channels share one set of statistics in ``norm`` (0 for anything else)."""
    if isinstance(norm, ChannelsLast):
        return channels_per_group(norm.norm)
    if isinstance(norm, nn.GroupNorm):
        return norm.num_channels // norm.num_groups
    if isinstance(norm, nn.LayerNorm):
        return norm.normalized_shape[-1]
    if isinstance(norm, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return 1
    return 0
