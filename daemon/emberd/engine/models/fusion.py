"""The fusion MLP, as AutoGluon's ``MultimodalFusionMLP`` computes it: a Linear adapter per
modality to a common width, concatenation, MLP units (LayerNorm, Linear, LeakyReLU,
dropout), then the output Linear.

With ``kernels="ops"`` (``env.kernels``, the default) the forward and backward run as one
``ember_kernels`` op that never builds the concatenation; with ``"reference"`` as the eager
modules below. Parameters (and so checkpoints) are the same either way."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..features import kernel_ops


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
    def __init__(
        self,
        in_features: Sequence[int],
        hidden: int,
        num_layers: int,
        dropout: float,
        num_outputs: int,
        *,
        kernels: str = "ops",
    ) -> None:
        super().__init__()
        kernel_ops(kernels)  # an unknown value or a missing extension fails here, at build time
        self.kernels = kernels
        width = max(in_features)
        self.adapters = nn.ModuleList(nn.Linear(f, width) for f in in_features)
        units, d = [], width * len(in_features)
        for _ in range(num_layers):
            units.append(MLPUnit(d, hidden, dropout))
            d = hidden
        self.mlp = nn.Sequential(*units)
        self.head = nn.Linear(d, num_outputs)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        ops = kernel_ops(self.kernels, "fusion head", features[0].device)
        if ops is None:
            x = torch.cat([a(f) for a, f in zip(self.adapters, features)], -1)
            return self.head(self.mlp(x))
        lead = features[0].shape[:-1]
        flat = [f.reshape(-1, f.shape[-1]) for f in features]
        units: list[MLPUnit] = list(self.mlp)
        scales: list[torch.Tensor] = []
        if self.training and any(u.drop.p > 0 for u in units):
            # F.dropout of ones makes the same generator calls, in the same order, as the
            # units' nn.Dropout: the ops and the reference drop the same activations.
            batch = flat[0].shape[0]
            scales = [F.dropout(flat[0].new_ones((batch, u.fc.out_features)), u.drop.p, True) for u in units]
        out = ops.fusion_mlp(
            flat,
            [a.weight for a in self.adapters],
            [a.bias for a in self.adapters],
            [u.norm.weight for u in units],
            [u.norm.bias for u in units],
            [u.fc.weight for u in units],
            [u.fc.bias for u in units],
            self.head.weight,
            self.head.bias,
            scales,
            eps=units[0].norm.eps if units else 1e-5,
            negative_slope=units[0].act.negative_slope if units else 0.01,
        )
        return out.reshape(*lead, out.shape[-1])
