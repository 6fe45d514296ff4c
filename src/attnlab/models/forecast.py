"""Small recurrent regressors for forecasting (notes §2.4): a window in, the next steps out.

Both map inputs (B, L, F) to predictions (B, horizon, 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.models.rnn import make_rnn


class RNNForecaster(nn.Module):
    """GRU or LSTM encoder; a linear head maps the last step's output to all ``horizon`` steps."""

    def __init__(
        self,
        in_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "gru",
        dropout: float = 0.0,
        norm: str = "none",
    ):
        super().__init__()
        self.rnn = make_rnn(cell, in_features, hidden_size, num_layers, dropout, False, norm)
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, inputs: Tensor) -> Tensor:
        outputs, _ = self.rnn(inputs)  # (B, L, hidden)
        return self.head(outputs[:, -1]).unsqueeze(-1)  # (B, horizon, 1)


class Seq2SeqForecaster(nn.Module):
    """GRU encoder-decoder: the encoder's final state starts a decoder that predicts one step at
    a time from its previous prediction (the first step from 0, the training mean).

    With ``teacher_forcing`` = p and ``targets`` given, each sample feeds the true previous value
    instead of its own prediction with probability p at every step.
    """

    def __init__(
        self,
        in_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        norm: str = "none",
    ):
        super().__init__()
        self.horizon = horizon
        self.encoder = make_rnn("gru", in_features, hidden_size, num_layers, dropout, False, norm)
        self.decoder = make_rnn("gru", 1, hidden_size, num_layers, dropout, False, norm)
        self.head = nn.Linear(hidden_size, 1)

    def forward(
        self, inputs: Tensor, targets: Tensor | None = None, teacher_forcing: float = 0.0
    ) -> Tensor:
        _, state = self.encoder(inputs)  # (num_layers, B, hidden)
        step = inputs.new_zeros(inputs.size(0), 1, 1)  # (B, 1, 1)
        predictions = []
        for t in range(self.horizon):
            output, state = self.decoder(step, state)  # (B, 1, hidden)
            prediction = self.head(output)  # (B, 1, 1)
            predictions.append(prediction)
            step = prediction
            if targets is not None and teacher_forcing > 0:
                use_truth = torch.rand_like(prediction) < teacher_forcing  # (B, 1, 1)
                step = torch.where(use_truth, targets[:, t : t + 1], prediction)
        return torch.cat(predictions, dim=1)  # (B, horizon, 1)
