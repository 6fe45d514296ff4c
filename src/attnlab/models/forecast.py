"""Small recurrent regressors for forecasting (notes §2.4): a window in, the next steps out.

Both map inputs (B, L, F) to predictions (B, horizon, 1). With ``relative`` they predict the
change from the last observed value of the target (input column ``target_column``), which is
added back: a network that outputs zeros is then the repeat-last forecast, and one that has
only seen other price levels in training need not extrapolate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.core.contracts import SeriesDims
from attnlab.core.registry import Settings, register
from attnlab.models.norms import Norm, check_norm
from attnlab.models.recurrent_cells import Cell, make_rnn


def check_forecaster(c: Settings) -> None:
    c.positive("width", "depth")
    c.fraction("dropout")
    check_norm(c, "recurrent")
    if c.relative and c.dims is not None and c.dims.target_column is None:
        c.fail("relative", "false with this data: its target is not one of the input columns")


class Forecaster(nn.Module):
    """What both forecasters share: the level that predictions are relative to."""

    def __init__(self, relative: bool, target_column: int | None):
        super().__init__()
        if relative and target_column is None:
            raise ValueError("relative=true needs data whose target is one of the input columns")
        self.relative, self.target_column = relative, target_column

    def level(self, inputs: Tensor) -> Tensor:
        """inputs (B, L, F) -> (B, 1, 1): the target's last value if relative, else zeros."""
        if not self.relative:
            return inputs.new_zeros(inputs.size(0), 1, 1)
        column = self.target_column
        return inputs[:, -1:, column : column + 1]  # (B, 1, 1)


@register("model", "rnn_forecaster", check=check_forecaster, data=(SeriesDims,))
class RNNForecaster(Forecaster):
    """GRU or LSTM encoder; a linear head maps the last step's output to all ``horizon`` steps."""

    def __init__(
        self,
        in_features: int,
        horizon: int,
        width: int = 64,
        depth: int = 1,
        cell: Cell = "gru",
        dropout: float = 0.0,
        norm: Norm = "none",
        relative: bool = False,
        target_column: int | None = None,
    ):
        super().__init__(relative, target_column)
        self.rnn = make_rnn(cell, in_features, width, depth, dropout, False, norm)
        self.head = nn.Linear(width, horizon)

    def forward(self, inputs: Tensor) -> Tensor:
        outputs, _ = self.rnn(inputs)  # (B, L, width)
        return self.head(outputs[:, -1]).unsqueeze(-1) + self.level(inputs)  # (B, horizon, 1)


@register("model", "seq2seq_forecaster", check=check_forecaster, data=(SeriesDims,))
class Seq2SeqForecaster(Forecaster):
    """GRU encoder-decoder: the encoder's final state starts a decoder that predicts one step at
    a time from its previous prediction (the first step from 0: the training mean, or no change
    when ``relative``).

    With ``teacher_forcing`` = p and ``targets`` given, each sample feeds the true previous value
    instead of its own prediction with probability p at every step.
    """

    def __init__(
        self,
        in_features: int,
        horizon: int,
        width: int = 64,
        depth: int = 1,
        dropout: float = 0.0,
        norm: Norm = "none",
        relative: bool = False,
        target_column: int | None = None,
    ):
        super().__init__(relative, target_column)
        self.horizon = horizon
        self.encoder = make_rnn("gru", in_features, width, depth, dropout, False, norm)
        self.decoder = make_rnn("gru", 1, width, depth, dropout, False, norm)
        self.head = nn.Linear(width, 1)

    def forward(
        self, inputs: Tensor, targets: Tensor | None = None, teacher_forcing: float = 0.0
    ) -> Tensor:
        _, state = self.encoder(inputs)  # (depth, B, width)
        level = self.level(inputs)  # (B, 1, 1)
        step = inputs.new_zeros(inputs.size(0), 1, 1)  # (B, 1, 1)
        predictions = []
        for t in range(self.horizon):
            output, state = self.decoder(step, state)  # (B, 1, width)
            prediction = self.head(output)  # (B, 1, 1), relative to ``level``
            predictions.append(prediction)
            step = prediction
            if targets is not None and teacher_forcing > 0:
                use_truth = torch.rand_like(prediction) < teacher_forcing  # (B, 1, 1)
                step = torch.where(use_truth, targets[:, t : t + 1] - level, prediction)
        return torch.cat(predictions, dim=1) + level  # (B, horizon, 1)
