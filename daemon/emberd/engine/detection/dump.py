"""A whole detector out for plain mmdet (``mmdet_image/``): ``config.json`` (an mmdet config:
model, test pipeline, class names), ``model.safetensors`` and ``classes.json``; loaded by the
snippet in ``MMDET_LOADING`` (also written beside them as ``README.md``)."""

from __future__ import annotations

from pathlib import Path

from ..dump import replace_dir
from ..storage import atomic_write_bytes, fresh_staging_dir, write_json, write_tensors
from .model import DetectionModel

__all__ = ["MMDET_LOADING", "dump_detector"]

MMDET_LOADING = """\
import json
from mmdet.apis import inference_detector, init_detector
from safetensors.torch import load_file

model = init_detector("mmdet_image/config.json", device="cpu")
model.load_state_dict(load_file("mmdet_image/model.safetensors"))
model.dataset_meta["classes"] = tuple(json.load(open("mmdet_image/classes.json")))
result = inference_detector(model, "image.jpg")  # result.pred_instances: bboxes, scores, labels
"""


def dump_detector(model: DetectionModel, save_path: Path) -> Path:
    save_path.mkdir(parents=True, exist_ok=True)
    staging = fresh_staging_dir(save_path, "mmdet_image")
    write_json(staging / "config.json", model.full_mmdet_config())
    write_tensors(staging / "model.safetensors", model.net.state_dict(), metadata={"format": "pt"})
    write_json(staging / "classes.json", list(model.schema.classes))
    atomic_write_bytes(staging / "README.md", f"An mmdet detector dumped by Ember. Load it with plain mmdet:\n\n```python\n{MMDET_LOADING}```\n".encode())
    replace_dir(staging, save_path / "mmdet_image")
    return save_path / "mmdet_image"
