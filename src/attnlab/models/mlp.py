"""A multilayer perceptron classifier over flattened images."""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.core.contracts import ImageDims
from attnlab.core.registry import Settings, register
from attnlab.models.norms import Norm, check_norm, make_norm, require_norm, weight_normalize


def check_mlp(c: Settings) -> None:
    c.positive("width", "width_multiplier")
    c.non_negative("depth")
    c.fraction("dropout")
    check_norm(c, "mlp")


@register("model", "mlp", check=check_mlp, data=(ImageDims,))
class MLP(nn.Module):
    """``depth`` hidden layers of Linear -> norm -> ReLU -> dropout, then a linear head, over
    flattened square images (B, C, H, W); ``width_multiplier`` scales ``width``. ``norm=weight``
    weight-normalises the hidden Linear layers instead of adding a norm layer."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        width: int = 256,
        depth: int = 2,
        dropout: float = 0.0,
        norm: Norm = "none",
        width_multiplier: float = 1.0,
    ):
        super().__init__()
        require_norm(norm, "mlp")
        in_features = in_channels * image_size * image_size
        self.norm_name = norm
        hidden = max(1, round(width * width_multiplier))
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            linear = nn.Linear(in_features if i == 0 else hidden, hidden)
            layers += [
                weight_normalize(linear) if norm == "weight" else linear,
                make_norm(norm, hidden, kind="1d"),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden if depth else in_features, num_classes)

    @property
    def first_layer(self) -> nn.Module:
        return self.body[1] if len(self.body) > 1 else self.head

    @property
    def last_layer(self) -> nn.Module:
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)  # (B, hidden)
        return self.head(h)  # (B, num_classes)
