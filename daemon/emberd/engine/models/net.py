"""``MultimodalNet``: the modality encoders a schema calls for, then either one head (one
modality) or the fusion MLP (several)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import Config
from ..data import Schema
from .fusion import FusionMLP
from .image import ImageEncoder
from .tabular import CategoricalEncoder, NumericEncoder
from .text import TextEncoder


class MultimodalNet(nn.Module):
    def __init__(self, schema: Schema, cfg: Config, encoders: dict[str, nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        widths = [e.out_features for e in self.encoders.values()]
        if len(widths) == 1:
            self.fusion = None
            self.head = nn.Sequential(nn.Dropout(cfg.fusion.dropout), nn.Linear(widths[0], schema.num_outputs))
        else:
            self.fusion = FusionMLP(
                widths, cfg.fusion.hidden_size, cfg.fusion.num_layers, cfg.fusion.dropout, schema.num_outputs,
                kernels=cfg.env.kernels,
            )
            self.head = None

    def features(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        return [enc(batch[name]) for name, enc in self.encoders.items()]

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        feats = self.features(batch)
        return self.head(feats[0]) if self.fusion is None else self.fusion(feats)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at ``lr * lr_mult``: everything but the pretrained backbones."""
        backbone_ids = {id(p) for k in ("text", "image") if k in self.encoders for p in self.encoders[k].parameters()}
        return [p for p in self.parameters() if id(p) not in backbone_ids]


def build_net(
    schema: Schema,
    cfg: Config,
    *,
    pretrained: bool,
    text_config_dir: str | None = None,
    image_config_dir: str | None = None,
) -> MultimodalNet:
    """``pretrained``: start from ``checkpoint_name`` weights (a new fit); otherwise build
    the architecture from a saved model's config folders (its weights are loaded after)."""
    encoders: dict[str, nn.Module] = {}
    if schema.text:
        n = len(schema.text)
        encoders["text"] = (
            TextEncoder.pretrained(cfg.text, n) if pretrained else TextEncoder.from_config_dir(text_config_dir, cfg.text, n)
        )
    if schema.image:
        if pretrained:
            encoders["image"] = ImageEncoder.create(cfg.image, pretrained=True)
        else:
            from dataclasses import replace

            encoders["image"] = ImageEncoder.create(replace(cfg.image, checkpoint_name=image_config_dir), pretrained=False)
    if schema.numeric:
        encoders["numeric"] = NumericEncoder(len(schema.numeric), cfg.numeric.hidden_size)
    if schema.categorical:
        cards = [len(schema.categories[c]) for c in schema.categorical]
        encoders["categorical"] = CategoricalEncoder(cards, cfg.categorical.embedding_size, cfg.categorical.hidden_size)
    return MultimodalNet(schema, cfg, encoders)
