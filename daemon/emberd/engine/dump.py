"""Backbones out to their own libraries' formats, loadable without Ember:

- ``hf_text/``: ``transformers.AutoModel.from_pretrained(dir)`` and ``AutoTokenizer``;
- ``timm_image/``: ``timm.create_model("local-dir:" + dir, pretrained=True)`` (config.json +
  model.safetensors, as ``timm.models.save_for_hf`` writes; ``num_classes=0`` features);
- ``mmdet_image/``: a whole detector for plain mmdet (``detection.dump``).

Each folder is written beside its final name and renamed into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .model_store import TrainedModel
from .storage import fresh_staging_dir
from .tasks import task_for


def replace_dir(staging: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)


def dump_backbones(model: Any, save_path: Path) -> list[Path]:
    """The folders ``model``'s task writes (``tasks.Task.dump``) under ``save_path``."""
    return task_for(model).dump(save_path)


def dump_table_backbones(model: TrainedModel, save_path: Path) -> list[Path]:
    """``hf_text/`` and ``timm_image/`` for the encoders the fused network has."""
    save_path.mkdir(parents=True, exist_ok=True)
    written = []
    if "text" in model.net.encoders:
        staging = fresh_staging_dir(save_path, "hf_text")
        model.net.encoders["text"].backbone.save_pretrained(staging, safe_serialization=True)
        model.tokenizer.save_pretrained(staging)
        replace_dir(staging, save_path / "hf_text")
        written.append(save_path / "hf_text")
    if "image" in model.net.encoders:
        from timm.models import save_for_hf

        staging = fresh_staging_dir(save_path, "timm_image")
        save_for_hf(model.net.encoders["image"].backbone, str(staging), safe_serialization=True)
        replace_dir(staging, save_path / "timm_image")
        written.append(save_path / "timm_image")
    return written
