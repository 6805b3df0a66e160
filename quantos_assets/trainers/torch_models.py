"""The networks of the deep-learning trainers: each maps windows [batch, lookback, features]
to one forecast per window.

Inputs are standardised inside the network (train-set mean and std as buffers), so a saved
model scores raw feature rows and nobody has to carry a scaler beside it.
"""

from __future__ import annotations

import torch
from torch import nn


class Standardise(nn.Module):
    """(x - mean) / std per feature, with the train set's statistics frozen in as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        # A constant feature has std 0: leave it centred, not divided by zero.
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BiLSTMForecaster(nn.Module):
    """Seed 000's model: a bidirectional LSTM reads a symbol's lookback window both ways;
    the last step's two directions feed a linear head."""

    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.scale = Standardise(n_features)
        self.lstm = nn.LSTM(
            n_features,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.scale(x))
        return self.head(out[:, -1, :]).squeeze(-1)


class MLPForecaster(nn.Module):
    """A feed-forward baseline on the flattened window (lookback 1: today's features)."""

    def __init__(
        self, n_features: int, lookback: int, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.scale = Standardise(n_features)
        blocks: list[nn.Module] = []
        width = n_features * lookback
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.scale(x).flatten(1)).squeeze(-1)
