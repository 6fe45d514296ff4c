"""A multilayer perceptron classifier over flat features or flattened images."""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.models.norms import make_norm

MLP_NORMS = ("none", "batch", "layer")


class MLP(nn.Module):
    """``depth`` hidden layers of Linear -> norm -> ReLU -> dropout, then a linear head.

    Inputs are (B, in_features) or images (B, C, H, W) with ``in_features`` = C * H * W, given
    directly or as ``in_channels`` and ``image_size`` (square images).
    """

    def __init__(
        self,
        num_classes: int,
        in_features: int | None = None,
        in_channels: int | None = None,
        image_size: int | None = None,
        width: int = 256,
        depth: int = 2,
        dropout: float = 0.0,
        norm: str = "none",
        width_multiplier: float = 1.0,
    ):
        super().__init__()
        if norm not in MLP_NORMS:
            raise ValueError(f"unknown MLP norm {norm!r}; one of {', '.join(MLP_NORMS)}")
        if in_features is None:
            if in_channels is None or image_size is None:
                raise ValueError("give in_features, or in_channels and image_size")
            in_features = in_channels * image_size * image_size
        self.norm_name = norm
        hidden = max(1, round(width * width_multiplier))
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [
                nn.Linear(in_features if i == 0 else hidden, hidden),
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
