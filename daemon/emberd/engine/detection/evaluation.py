"""COCO mean average precision with pycocotools, on boxes in original image pixels."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidArgument

__all__ = ["METRICS", "coco_map"]

# name -> index in pycocotools' ``COCOeval.stats``
METRICS = {"map": 0, "map_50": 1, "map_75": 2, "map_small": 3, "map_medium": 4, "map_large": 5, "mar_100": 8}


def check_metrics(names: Sequence[str]) -> list[str]:
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise InvalidArgument(f"unknown detection metric(s) {bad}; valid: {list(METRICS)}")
    return list(names)


def coco_map(
    predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    targets: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
) -> dict[str, float]:
    """``predictions``: per image (boxes (k, 4) xyxy, scores (k,), class indices (k,));
    ``targets``: per image (boxes, class indices). Every metric of ``METRICS`` (-1 where
    COCO has no box of that size)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b: np.ndarray) -> list[float]:
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    images, anns, dets = [], [], []
    for i, ((gb, gl), (pb, ps, pl)) in enumerate(zip(targets, predictions)):
        images.append({"id": i})
        for b, c in zip(gb, gl):
            area = float((b[2] - b[0]) * (b[3] - b[1]))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": xywh(b), "area": area, "iscrowd": 0})
        for b, s, c in zip(pb, ps, pl):
            dets.append({"image_id": i, "category_id": int(c), "bbox": xywh(b), "score": float(s)})
    if not anns:
        raise InvalidArgument("evaluation needs at least one labelled box in the data")
    if not dets:
        return {m: 0.0 for m in METRICS}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": k} for k in range(num_classes)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {m: float(ev.stats[k]) for m, k in METRICS.items()}
