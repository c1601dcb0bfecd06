"""Backbones out to their own libraries' formats, loadable without Ember:

- ``hf_text/``: ``transformers.AutoModel.from_pretrained(dir)`` and ``AutoTokenizer``;
- ``timm_image/``: ``timm.create_model("local-dir:" + dir, pretrained=True)`` (config.json +
  model.safetensors, as ``timm.models.save_for_hf`` writes; ``num_classes=0`` features);
- ``mmdet_image/``: a whole detector for plain mmdet: ``config.json`` (an mmdet config:
  model, test pipeline, class names), ``model.safetensors`` and ``classes.json``; loaded by
  the snippet in ``MMDET_LOADING`` (also written beside them as ``README.md``).

Each folder is written beside its final name and renamed into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .detection.model import DetectionModel
from .model_store import TrainedModel
from .storage import atomic_write_bytes, fresh_staging_dir, write_json, write_tensors

MMDET_LOADING = """\
import json
from mmdet.apis import inference_detector, init_detector
from safetensors.torch import load_file

model = init_detector("mmdet_image/config.json", device="cpu")
model.load_state_dict(load_file("mmdet_image/model.safetensors"))
model.dataset_meta["classes"] = tuple(json.load(open("mmdet_image/classes.json")))
result = inference_detector(model, "image.jpg")  # result.pred_instances: bboxes, scores, labels
"""


def _replace_dir(staging: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)


def dump_detector(model: DetectionModel, save_path: Path) -> Path:
    save_path.mkdir(parents=True, exist_ok=True)
    staging = fresh_staging_dir(save_path, "mmdet_image")
    write_json(staging / "config.json", model.full_mmdet_config())
    write_tensors(staging / "model.safetensors", model.net.state_dict(), metadata={"format": "pt"})
    write_json(staging / "classes.json", list(model.schema.classes))
    atomic_write_bytes(staging / "README.md", f"An mmdet detector dumped by Ember. Load it with plain mmdet:\n\n```python\n{MMDET_LOADING}```\n".encode())
    _replace_dir(staging, save_path / "mmdet_image")
    return save_path / "mmdet_image"


def dump_backbones(model: TrainedModel | DetectionModel, save_path: Path) -> list[Path]:
    if isinstance(model, DetectionModel):
        return [dump_detector(model, save_path)]
    save_path.mkdir(parents=True, exist_ok=True)
    written = []
    if "text" in model.net.encoders:
        staging = fresh_staging_dir(save_path, "hf_text")
        model.net.encoders["text"].backbone.save_pretrained(staging, safe_serialization=True)
        model.tokenizer.save_pretrained(staging)
        _replace_dir(staging, save_path / "hf_text")
        written.append(save_path / "hf_text")
    if "image" in model.net.encoders:
        from timm.models import save_for_hf

        staging = fresh_staging_dir(save_path, "timm_image")
        save_for_hf(model.net.encoders["image"].backbone, str(staging), safe_serialization=True)
        _replace_dir(staging, save_path / "timm_image")
        written.append(save_path / "timm_image")
    return written
