"""A detector to ONNX, up to the head's raw outputs; decoding and NMS stay outside the graph.

The bundle: ``model.onnx`` (input ``image``: the preprocessed batch, float32 (N, 3, S, S):
RGB, ``(pixel - mean) / std`` with the manifest's mean and std, images resized to S x S
without keeping the aspect ratio; outputs per FPN level ``cls_score_<i>`` (logits),
``bbox_pred_<i>`` and, where the head has them, ``centerness_<i>``/``objectness_<i>``
(logits)), and ``manifest.json`` with the class names, strides, the head's decoding
settings (prior generator, box coder) and NMS settings. With mmdet at hand, the head's own
``predict_by_feat(cls_scores, bbox_preds, [third output,] batch_img_metas=..., rescale=True)``
on the graph's outputs decodes them exactly as Ember does. The export is checked with
``onnx.checker`` and against onnxruntime on real rows (``manifest["parity"]``: the largest
difference per kind of output, absolute, and over all outputs relative to ``max(1, |value|)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..errors import Unsupported
from ..export import TOLERANCE, ParityError, staged
from ..storage import write_json
from .model import DetectionModel

__all__ = ["export_onnx", "publish_onnx"]

OUTPUTS = {
    "FCOSHead": ("cls_score", "bbox_pred", "centerness"),
    "RetinaHead": ("cls_score", "bbox_pred"),
    "YOLOXHead": ("cls_score", "bbox_pred", "objectness"),
}

DECODING = (
    "Per level i (stride s_i), the outputs are maps over a grid of H_i x W_i locations. "
    "Class scores: sigmoid of cls_score (multiplied, for FCOS by sigmoid(centerness) and for YOLOX by "
    "sigmoid(objectness), before ranking). Boxes: from each location's prior (prior_generator: points or anchors "
    "at stride s_i) with the bbox coder (bbox_coder / the head's type). Then keep scores above test_cfg.score_thr "
    "(at most test_cfg.nms_pre per level), run per-class NMS at test_cfg.nms.iou_threshold, keep "
    "test_cfg.max_per_img, and divide boxes by (w_scale, h_scale) = (S / width, S / height) to get original pixels."
)


class _RawHead(nn.Module):
    """The detector's backbone, neck and head, outputs flattened level by level."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for kind in self.net._forward(image) for t in kind)


def export_onnx(model: DetectionModel, folder: Path, rows: pd.DataFrame, *, opset: int = 18) -> dict[str, Any]:
    """Write ``model.onnx`` and ``manifest.json`` into ``folder``; ``rows`` (real images)
    feed the export and the onnxruntime parity check. Returns the manifest."""
    import onnx
    import onnxruntime as ort

    head = model.model_cfg["bbox_head"]
    kinds = OUTPUTS.get(head["type"])
    if kinds is None:
        raise Unsupported(f"ONNX export knows the heads {sorted(OUTPUTS)}, not {head['type']}")
    ds = model.encode(rows, with_labels=False, skip_bad_images=False)
    inputs, raw = model.raw_outputs(ds, range(ds.n))
    levels = len(raw) // len(kinds)
    names = [f"{k}_{i}" for k in kinds for i in range(levels)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    wrapper = _RawHead(model.net).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (inputs,), str(path), input_names=["image"], output_names=names,
            dynamic_shapes={"image": {0: batch}}, dynamo=True, external_data=False, opset_version=opset,
        )
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(names, {"image": inputs.numpy()})
    # Box regressions come out of exp() in pixels (tens to hundreds): compare relative to
    # the magnitude there, and absolutely where values are below 1 (logits, offsets).
    errors = [(torch.from_numpy(g) - t).abs() for g, t in zip(got, raw)]
    by_kind = {k: max(float(e.max()) for e in errors[i * levels : (i + 1) * levels]) for i, k in enumerate(kinds)}
    rel_diff = max(float((e / t.abs().clamp(min=1.0)).max()) for e, t in zip(errors, raw))
    priors = model.net.bbox_head.prior_generator
    strides = [int(s[0]) if isinstance(s, (list, tuple)) else int(s) for s in priors.strides]
    pre = model.model_cfg["data_preprocessor"]
    test_cfg = model.model_cfg["test_cfg"]
    manifest = {
        "format": "ember.detection.onnx/1",
        "input": "image",
        "input_shape": ["batch", 3, model.cfg.detection.image_size, model.cfg.detection.image_size],
        "preprocessing": {
            "color": "RGB",
            "resize": "to image_size x image_size, aspect ratio not kept (bilinear)",
            "mean": pre.get("mean", [0.0, 0.0, 0.0]),
            "std": pre.get("std", [1.0, 1.0, 1.0]),
            "pad_value": pre.get("pad_value", 0.0),
        },
        "outputs": names,
        "classes": list(model.schema.classes),
        "head": head["type"],
        "strides": strides,
        "prior_generator": head.get("anchor_generator") or {"type": type(priors).__name__, "strides": strides, "offset": priors.offset},
        "bbox_coder": head.get(
            "bbox_coder", {"type": "distance (l, t, r, b) * stride" if head["type"] == "FCOSHead" else "YOLOX (xy offset * stride, exp(wh) * stride)"}
        ),
        "test_cfg": test_cfg,
        "decoding": DECODING,
        "parity": {"rows": ds.n, "max_abs_diff": by_kind, "max_rel_diff": rel_diff},
    }
    write_json(folder / "manifest.json", manifest)
    return manifest


def publish_onnx(model: DetectionModel, out_dir: Path, rows: pd.DataFrame, *, opset: int) -> Path:
    """``export_onnx`` staged beside ``out_dir`` and published there only when onnxruntime
    agrees with torch within ``export.TOLERANCE`` (relative to magnitude)."""
    with staged(out_dir) as staging:
        parity = export_onnx(model, staging, rows.head(8), opset=opset)["parity"]
        if parity["max_rel_diff"] > TOLERANCE:
            raise ParityError(f"onnxruntime disagrees with torch on the detector's raw outputs: {parity}")
    return out_dir
