"""A trained detector: the mmdet network, its mmdet config, and how rows reach it.

On disk (a version folder, or a run's assets) it is ``schema.json`` and ``config.json``
(Ember's), ``mmdet_image/config.json`` (the mmdet config: model, test pipeline, class
names) and the weights in ``model.safetensors`` beside them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import Config
from ..data import Schema
from ..storage import read_json, write_json
from .data import DetectionSet, encode_detection
from .detectors import build_detector, detector_config, is_mmdet_folder, transfer_weights

log = logging.getLogger("emberd.engine")

__all__ = ["DetectionModel", "mmdet_config"]

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (k, 4) xyxy, scores (k,), class indices (k,)


def mmdet_config(model_cfg: dict[str, Any], classes: Sequence[str], image_size: int) -> dict[str, Any]:
    """A whole mmdet config around ``model_cfg``: what ``mmdet.apis.init_detector`` and
    ``inference_detector`` need (test pipeline resizing as Ember does, class names)."""
    pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "Resize", "scale": (image_size, image_size), "keep_ratio": False},
        {"type": "PackDetInputs", "meta_keys": ["img_id", "img_path", "ori_shape", "img_shape", "scale_factor"]},
    ]
    return {
        "default_scope": "mmdet",
        "model": model_cfg,
        "test_pipeline": pipeline,
        "test_dataloader": {
            "batch_size": 1,
            "num_workers": 0,
            "dataset": {
                "type": "CocoDataset", "data_root": "", "ann_file": "", "test_mode": True, "metainfo": {"classes": list(classes)}, "pipeline": pipeline
            },
        },
    }


@dataclass
class DetectionModel:
    schema: Schema
    cfg: Config
    net: nn.Module  # an mmdet detector
    model_cfg: dict[str, Any]  # its mmdet model config (JSON-shaped)

    @classmethod
    def create(cls, schema: Schema, cfg: Config) -> "DetectionModel":
        """A new detector for ``schema``'s classes: a preset with fresh weights, or a dumped
        detector's architecture with its backbone and neck (and a new head)."""
        d = cfg.detection
        model_cfg = detector_config(d.checkpoint_name, schema.classes, d.score_threshold, d.max_detections)
        net = build_detector(model_cfg)
        if is_mmdet_folder(d.checkpoint_name):
            loaded = transfer_weights(net, d.checkpoint_name)
            log.info("transferred %d backbone/neck tensors from %s", len(loaded), d.checkpoint_name)
        return cls(schema, cfg, net, model_cfg)

    def continued(self, cfg: Config) -> "DetectionModel":
        """A copy to keep training (same structure; test-time settings from ``cfg``)."""
        model_cfg = copy.deepcopy(self.model_cfg)
        model_cfg["test_cfg"]["score_thr"] = cfg.detection.score_threshold
        model_cfg["test_cfg"]["max_per_img"] = cfg.detection.max_detections
        net = copy.deepcopy(self.net)
        net.bbox_head.test_cfg = copy.deepcopy(self.net.bbox_head.test_cfg)
        net.bbox_head.test_cfg.score_thr = cfg.detection.score_threshold
        net.bbox_head.test_cfg.max_per_img = cfg.detection.max_detections
        return DetectionModel(self.schema, cfg, net, model_cfg)

    @property
    def backbone_from_training(self) -> bool:
        """Whether the backbone starts from trained weights (a dump), not fresh ones."""
        return is_mmdet_folder(self.cfg.detection.checkpoint_name)

    # ---- rows -------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame, *, with_labels: bool, skip_bad_images: bool) -> DetectionSet:
        return encode_detection(df, self.schema, image_size=self.cfg.detection.image_size, with_labels=with_labels, skip_bad_images=skip_bad_images)

    def batch(self, ds: DetectionSet, rows: Sequence[int], *, flip: Sequence[bool] | None = None) -> dict[str, Any]:
        """mmdet's input for ``rows``: BGR uint8 images (as its loaders give) and data
        samples with the resize's metadata and, when labelled, the boxes (``flip``: mirror
        those rows horizontally)."""
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData

        size = ds.images.shape[-1]
        inputs, samples = [], []
        for j, i in enumerate(rows):
            img = ds.images[i].flip(0)
            sample = DetDataSample(metainfo={"img_shape": (size, size), "ori_shape": ds.sizes[i], "scale_factor": ds.scale(i)})
            if ds.boxes is not None:
                boxes = ds.boxes[i]
                if flip is not None and flip[j]:
                    img = img.flip(-1)
                    boxes = torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], -1)
                sample.gt_instances = InstanceData(bboxes=boxes, labels=ds.labels[i])
            inputs.append(img)
            samples.append(sample)
        return {"rows": list(rows), "inputs": inputs, "data_samples": samples}

    # ---- inference --------------------------------------------------------------------
    @torch.inference_mode()
    def detect(self, ds: DetectionSet) -> list[Detections]:
        """Boxes (original pixels), scores and class indices per row, after NMS."""
        self.net.eval()
        bs = self.cfg.env.eval_batch_size
        out: list[Detections] = []
        for start in range(0, ds.n, bs):
            data = self.net.data_preprocessor(self.batch(ds, range(start, min(ds.n, start + bs))), False)
            for r in self.net.predict(data["inputs"], data["data_samples"], rescale=True):
                p = r.pred_instances
                out.append((p.bboxes.numpy(), p.scores.numpy(), p.labels.numpy()))
        return out

    @torch.inference_mode()
    def raw_outputs(self, ds: DetectionSet, rows: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The preprocessed input batch and the head's raw outputs on it (per level: class
        scores, box regressions, and objectness/centerness where the head has them)."""
        self.net.eval()
        data = self.net.data_preprocessor(self.batch(ds, rows), False)
        outs = self.net._forward(data["inputs"])
        return data["inputs"], [t for level in outs for t in level]

    def targets(self, ds: DetectionSet) -> list[tuple[np.ndarray, np.ndarray]]:
        """The labelled boxes in original pixels, per row."""
        assert ds.boxes is not None and ds.labels is not None
        out = []
        for i in range(ds.n):
            sw, sh = ds.scale(i)
            out.append(((ds.boxes[i] / torch.tensor([sw, sh, sw, sh])).numpy(), ds.labels[i].numpy()))
        return out

    # ---- storage ----------------------------------------------------------------------
    def full_mmdet_config(self) -> dict[str, Any]:
        return mmdet_config(self.model_cfg, self.schema.classes, self.cfg.detection.image_size)

    def write_assets(self, folder: Path) -> None:
        write_json(folder / "schema.json", self.schema.to_json())
        write_json(folder / "config.json", self.cfg.to_dict())
        write_json(folder / "mmdet_image" / "config.json", self.full_mmdet_config())

    @classmethod
    def from_assets(cls, folder: Path, weights: dict[str, torch.Tensor] | None) -> "DetectionModel":
        schema = Schema.from_json(read_json(folder / "schema.json"))
        cfg = Config.from_dict(read_json(folder / "config.json"))
        model_cfg = read_json(folder / "mmdet_image" / "config.json")["model"]
        net = build_detector(model_cfg)
        if weights is not None:
            net.load_state_dict(weights, strict=True)
        net.eval()
        return cls(schema, cfg, net, model_cfg)
