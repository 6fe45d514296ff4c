"""Normalization layers chosen by name (notes §6): batch, layer, instance, group, weight or none.

One signature for every layout a model hands over:

- ``"2d"``: conv feature maps (B, C, H, W)
- ``"1d"``: feature vectors (B, C)
- ``"seq"``: sequences, channels last (B, T, C); batch norm there is SequenceBatchNorm, which
  takes a padding mask (``normalize`` hands it over)

Layer and instance norm of feature maps are GroupNorm with 1 and C groups: the two extremes
of group norm (notes §6.3.4), so the four norms differ only in which values share statistics.

Weight norm (Salimans & Kingma 2016) normalises no activations: it reparameterises the weight
of the conv or linear layer that precedes where a norm layer would stand (``weight_normalize``),
and ``make_norm("weight", ...)`` is the Identity that takes the norm layer's place.

``Norm`` is every model's ``norm`` vocabulary; ``FAMILY_NORMS`` says which of it each family
takes, and ``check_norm`` (a config) and ``require_norm`` (a constructor) refuse the rest.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm, weight_norm

from attnlab.core.registry import Settings

Norm = Literal["batch", "layer", "instance", "group", "weight", "none"]
NORMS = get_args(Norm)
KINDS = ("2d", "1d", "seq")

# The norms each family takes. Sequence models leave out instance and group norm: they pool
# over time within a sequence, so a position would see later ones. LayerNorm is over the
# channels of each position, BatchNorm over the real positions of batch x time.
FAMILY_NORMS: dict[str, tuple[str, ...]] = {
    "resnet": NORMS,
    "mlp": ("batch", "layer", "weight", "none"),
    "conv": ("batch", "layer", "weight", "none"),
    "recurrent": ("batch", "layer", "weight", "none"),
    "transformer": ("batch", "layer", "none"),
}
# Why a family refuses a norm, where the vocabulary alone does not say.
WHY_NOT = {
    ("transformer", "weight"): "a Transformer normalises residual sums x + F(x), which no one "
    "weight matrix produces, so weight norm has no layer to stand in for",
}


def check_norm(c: Settings, family: str) -> None:
    """The config's ``norm`` is one that ``family`` takes (a one-line error otherwise)."""
    allowed = FAMILY_NORMS[family]
    if c.norm not in allowed:
        why = WHY_NOT.get((family, c.norm))
        c.fail("norm", f"one of {', '.join(allowed)}" + (f": {why}" if why else ""))


def require_norm(name: str, family: str) -> None:
    """A constructor's check: ``name`` is one of the norms ``family`` takes."""
    if name not in FAMILY_NORMS[family]:
        raise ValueError(f"norm={name!r}; allowed: {', '.join(FAMILY_NORMS[family])}")


class ChannelsLast(nn.Module):
    """Apply a channels-first norm (B, C, T) to a channels-last sequence (B, T, C)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)


class SequenceBatchNorm(nn.Module):
    """BatchNorm of channels-last sequences (B, T, C): each channel over batch x time.

    With ``mask`` (B, T), True on real positions, only real positions enter the batch statistics
    and the running estimates, and padded positions come out as zero, so padding cannot shift
    the statistics (PowerNorm, Shen et al. 2020, masks padding out of its statistics likewise).
    Without a mask every position counts. In training, statistics pool over all time steps, so
    a causal decoder's position t sees a trace of later positions through them; eval mode,
    on running estimates, is per position. The BatchNorm1d inside sees rows (N, C), so
    SyncBatchNorm conversion under DDP (``trainer.sync_batchnorm``) keeps all of this.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, T, C), mask: (B, T) or None -> (B, T, C)."""
        if mask is None:
            return self.norm(x.flatten(0, 1)).view_as(x)  # (B, T, C)
        real = self.norm(x[mask])  # (N, C), the N real positions
        return torch.zeros_like(x).masked_scatter(mask[..., None], real)  # (B, T, C)


def normalize(norm: nn.Module, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Apply a ``kind="seq"`` norm to x: (B, T, C); ``mask`` (B, T) goes to norms that take one."""
    return norm(x, mask) if isinstance(norm, SequenceBatchNorm) else norm(x)


def make_norm(name: str, channels: int, *, groups: int = 1, kind: str = "2d") -> nn.Module:
    """A norm layer over ``channels`` for inputs of layout ``kind``; ``groups`` is for "group".

    "weight" gives an Identity: the model weight-normalises the layer before it instead.
    """
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; one of {', '.join(NORMS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; one of {', '.join(KINDS)}")
    if name == "group" and (groups < 1 or channels % groups):
        raise ValueError(f"groups={groups} must divide channels={channels}")
    if name in ("none", "weight"):
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
        return SequenceBatchNorm(channels) if kind == "seq" else nn.BatchNorm1d(channels)
    if name == "instance":
        norm = nn.InstanceNorm1d(channels, affine=True)
    else:
        norm = nn.GroupNorm(groups, channels)
    return ChannelsLast(norm) if kind == "seq" else norm


def make_seq_norm(name: str, channels: int, family: str) -> nn.Module:
    """A norm over (B, T, channels) of those ``family`` takes; apply it with ``normalize``
    (padding mask)."""
    require_norm(name, family)
    return make_norm(name, channels, kind="seq")


def channels_per_group(norm: nn.Module) -> int:
    """How many channels share one set of statistics in ``norm`` (0 for anything else)."""
    if isinstance(norm, ChannelsLast | SequenceBatchNorm):
        return channels_per_group(norm.norm)
    if isinstance(norm, nn.GroupNorm):
        return norm.num_channels // norm.num_groups
    if isinstance(norm, nn.LayerNorm):
        return norm.normalized_shape[-1]
    if isinstance(norm, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return 1
    return 0


def weight_normalize(layer: nn.Module, *names: str) -> nn.Module:
    """Weight normalization (Salimans & Kingma 2016; notes §6): each output unit's weight vector
    becomes w = g v / ||v||, its length g learned apart from its direction v. ``names``: the
    layer's weight tensors ("weight" if none given). At the start g = ||v||, so w is unchanged.
    """
    for name in names or ("weight",):
        weight_norm(layer, name)
    return layer


def init_(module: nn.Module, name: str, fill) -> None:
    """Initialise ``module.<name>`` in place with ``fill`` (an ``nn.init`` function); a
    weight-normalised tensor through its reparametrisation: v gets the values and g = ||v||."""
    if not parametrize.is_parametrized(module, name):
        fill(getattr(module, name))
        return
    value = getattr(module, name).detach().clone()
    fill(value)
    with torch.no_grad():
        setattr(module, name, value)


def weight_norm_gains(module: nn.Module) -> list[nn.Parameter]:
    """The gains g of every weight-normalised tensor in ``module`` (not its directions v)."""
    return [
        parametrizations.original0
        for m in module.modules()
        if parametrize.is_parametrized(m)
        for parametrizations in m.parametrizations.values()
        if any(isinstance(p, _WeightNorm) for p in parametrizations)
    ]
