"""``timm_image``: any timm architecture as a feature extractor (its classifier removed)."""

from __future__ import annotations

import os

import timm
import torch
from torch import nn

from ..config import ImageConfig
from ..errors import NotFound


def names_folder(name: str) -> bool:
    """A checkpoint name that is a path (it has a separator: ``./x``, ``/a/b``), not an
    architecture or preset name (``resnet18``): a bare name never reads a folder that
    happens to sit in the working directory."""
    return "/" in name or os.sep in name


def is_timm_folder(name: str) -> bool:
    return names_folder(name) and os.path.isdir(name) and os.path.exists(os.path.join(name, "config.json"))


def check_image_checkpoint(name: str) -> None:
    """Raise NotFound unless ``name`` is a timm architecture or a timm folder on disk."""
    if is_timm_folder(name):
        return
    if names_folder(name):
        raise NotFound(
            f"model.timm_image.checkpoint_name {name!r} is not a timm folder on disk "
            "(config.json + model.safetensors, as dump_model writes)"
        )
    if name not in timm.list_models():
        raise NotFound(f"model.timm_image.checkpoint_name {name!r} is not a timm architecture; see timm.list_models()")


class ImageEncoder(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_features = backbone.num_features
        cfg = backbone.pretrained_cfg or {}
        self.mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))

    @classmethod
    def create(cls, cfg: ImageConfig, *, pretrained: bool) -> "ImageEncoder":
        """``checkpoint_name`` is a timm architecture (random init: no hub here) or a folder
        written by ``timm.models.save_for_hf`` / ``dump_model`` (weights loaded from it)."""
        name = cfg.checkpoint_name
        check_image_checkpoint(name)
        if is_timm_folder(name):
            model = timm.create_model("local-dir:" + os.path.abspath(name), pretrained=pretrained, num_classes=0)
        else:
            model = timm.create_model(name, pretrained=False, num_classes=0)
        return cls(model)

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.backbone(x) for x in images], -1)
