"""``numerical_mlp`` and ``categorical_mlp``: small MLPs over standardized numbers and
per-column category embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NumericEncoder(nn.Module):
    def __init__(self, num_columns: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_columns, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class CategoricalEncoder(nn.Module):
    """One embedding table per column (index 0 = unknown or missing), then an MLP."""

    def __init__(self, cardinalities: Sequence[int], embedding_size: int, hidden: int) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, embedding_size) for c in cardinalities)
        self.mlp = nn.Sequential(
            nn.Linear(embedding_size * len(cardinalities), hidden), nn.GELU(), nn.LayerNorm(hidden)
        )
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([emb(x[:, i]) for i, emb in enumerate(self.embeddings)], -1))
