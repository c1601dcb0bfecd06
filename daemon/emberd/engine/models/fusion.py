"""The fusion MLP, as AutoGluon's ``MultimodalFusionMLP`` computes it: a Linear adapter per
modality to a common width, concatenation, MLP units (LayerNorm, Linear, LeakyReLU,
dropout), then the output Linear."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class MLPUnit(nn.Module):
    def __init__(self, in_features: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc = nn.Linear(in_features, out_features)
        self.act = nn.LeakyReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.fc(self.norm(x))))


class FusionMLP(nn.Module):
    def __init__(self, in_features: Sequence[int], hidden: int, num_layers: int, dropout: float, num_outputs: int) -> None:
        super().__init__()
        width = max(in_features)
        self.adapters = nn.ModuleList(nn.Linear(f, width) for f in in_features)
        units, d = [], width * len(in_features)
        for _ in range(num_layers):
            units.append(MLPUnit(d, hidden, dropout))
            d = hidden
        self.mlp = nn.Sequential(*units)
        self.head = nn.Linear(d, num_outputs)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([a(f) for a, f in zip(self.adapters, features)], -1)
        return self.head(self.mlp(x))
