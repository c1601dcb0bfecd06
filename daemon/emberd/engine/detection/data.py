"""Detection data: rows of an image (path or bytes) with its boxes and their labels.

The DataFrame form has one image column, ``boxes`` (per row, a list of ``[x1, y1, x2, y2]``
in pixels of the original image) and the label column (per row, a list of class names, one
per box). ``load_coco`` reads COCO-style annotations into that form. Images are decoded
once per dataset and resized to a square (boxes scaled alike); predictions are scaled back.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from ..data import JsonTooDeep, Schema, _looks_like_image, parse_json, register_table_reader
from ..errors import InvalidArgument, NotFound
from ..features import decode_images
from ..sources import open_image

log = logging.getLogger("emberd.engine")

__all__ = ["DETECTION", "BOXES", "DetectionSet", "is_detection_frame", "load_coco", "detection_schema", "encode_detection"]

DETECTION = "object_detection"
BOXES = "boxes"


def is_detection_frame(df: pd.DataFrame) -> bool:
    return BOXES in df.columns


def load_coco(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *, label: str = "label") -> pd.DataFrame:
    """COCO-style annotations (``images``, ``annotations`` with ``bbox`` as ``[x, y, w, h]``,
    ``categories``) as Ember's detection frame; image paths are resolved against
    ``image_root`` (default: the annotation file's folder). Crowd boxes are left out."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no such COCO annotation file {str(path)!r}")
    try:
        coco = parse_json(path.read_bytes(), str(path))
        images, cats = coco["images"], {c["id"]: c["name"] for c in coco["categories"]}
        anns = coco.get("annotations", [])
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"{str(path)!r} is not COCO-style annotations (images, annotations, categories): {e}") from None
    root = (Path(image_root) if image_root is not None else path.parent).resolve()
    outside = [im["file_name"] for im in images if root not in (root / im["file_name"]).resolve().parents]
    if outside:
        raise InvalidArgument(f"{str(path)!r} names images outside its image folder {str(root)!r}: {outside[:3]}")
    per_image: dict[Any, tuple[list[list[float]], list[str]]] = {im["id"]: ([], []) for im in images}
    for a in anns:
        if a.get("iscrowd"):
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        boxes, labels = per_image[a["image_id"]]
        boxes.append([x, y, x + w, y + h])
        labels.append(str(cats[a["category_id"]]))
    return pd.DataFrame(
        {
            "image": [str(root / im["file_name"]) for im in images],
            BOXES: [per_image[im["id"]][0] for im in images],
            label: [per_image[im["id"]][1] for im in images],
        }
    )


# a ``.json`` table path (a fit's data, the daemon's uploads) is read as COCO annotations
register_table_reader((".json",), lambda path, what: load_coco(path), "COCO annotations (.json)")


def _json_list(value: Any) -> Any:
    """A list cell as read from CSV/TSV (JSON text, ``[[1, 2, 30, 40]]``) parsed; others as given."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return parse_json(value, "a boxes or labels cell")
        except JsonTooDeep:
            raise
        except InvalidArgument:
            return value
    return value


def _boxes(value: Any) -> list[list[float]]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [[float(c) for c in b] for b in _json_list(value)]


def _labels(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    value = _json_list(value)
    if isinstance(value, str):
        raise InvalidArgument(
            f"a detection label cell holds a list of class names, one per box (in CSV/TSV as JSON text, "
            f'["cat", "dog"]); got the string {value!r}'
        )
    return [str(v) for v in value]


def detection_schema(df: pd.DataFrame, label: str, column_types: dict[str, str] | None) -> Schema:
    """The image column (the one column besides ``boxes`` and the label, or the one marked
    ``image`` in ``column_types``) and the class names, sorted."""
    column_types = column_types or {}
    if BOXES not in df.columns:
        raise InvalidArgument(f"object detection needs a {BOXES!r} column (per row, a list of [x1, y1, x2, y2]); the data has {list(df.columns)}")
    marked = [c for c, t in column_types.items() if t == "image"]
    candidates = marked or [c for c in df.columns if c not in (label, BOXES) and column_types.get(c) != "ignore"]
    if len(candidates) != 1 or not _looks_like_image(df[candidates[0]]):
        raise InvalidArgument(
            f"object detection reads one image column (paths or bytes) besides {BOXES!r} and {label!r}; "
            f"found {candidates}: mark the image column with column_types={{name: 'image'}} and others 'ignore'"
        )
    classes = sorted({c for v in df[label] for c in _labels(v)})
    if not classes:
        raise InvalidArgument(f"label column {label!r} has no boxes' labels: a detector needs at least one labelled box")
    return Schema(label=label, problem_type="object_detection", image=(candidates[0],), classes=tuple(classes))


def check_detection_rows(df: pd.DataFrame, schema: Schema, *, with_label: bool, what: str) -> None:
    """Each row's boxes are well formed and match its labels one to one."""
    schema.check_columns(df, with_label=with_label, what=what)
    if not with_label:
        return
    if BOXES not in df.columns:
        raise InvalidArgument(f"{what} lacks the {BOXES!r} column (per row, a list of [x1, y1, x2, y2])")
    for i, (b, lab) in enumerate(zip(df[BOXES], df[schema.label])):
        try:
            boxes = _boxes(b)
        except (TypeError, ValueError):
            raise InvalidArgument(f"{what} row {i}: boxes must be a list of [x1, y1, x2, y2] numbers, got {b!r}") from None
        labels = _labels(lab)
        if len(boxes) != len(labels):
            raise InvalidArgument(f"{what} row {i}: {len(boxes)} boxes but {len(labels)} labels; give one label per box")
        for box in boxes:
            if len(box) != 4 or not box[2] > box[0] or not box[3] > box[1]:
                raise InvalidArgument(f"{what} row {i}: box {box} is not [x1, y1, x2, y2] with x2 > x1 and y2 > y1")


@dataclass
class DetectionSet:
    """Decoded rows: images resized to a square, their boxes in that square."""

    images: torch.Tensor  # (N, 3, S, S) uint8 RGB
    sizes: list[tuple[int, int]]  # original (height, width)
    boxes: list[torch.Tensor] | None  # (k, 4) float32, in resized pixels
    labels: list[torch.Tensor] | None  # (k,) int64 class indices
    kept_rows: list[int]  # rows of the frame that were read

    @property
    def n(self) -> int:
        return len(self.kept_rows)

    def scale(self, i: int) -> tuple[float, float]:
        """(w_scale, h_scale): resized over original pixels, as mmdet's ``scale_factor``."""
        s = self.images.shape[-1]
        h, w = self.sizes[i]
        return s / w, s / h


def _decode(value: Any, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    with open_image(value, "image") as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        hw = (img.height, img.width)
        return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8), hw


def encode_detection(df: pd.DataFrame, schema: Schema, *, image_size: int, with_labels: bool, skip_bad_images: bool) -> DetectionSet:
    """Decode the rows' images (two threads); a row whose image cannot be read is skipped
    with a warning (fit) or is an error naming it (predict, evaluate)."""
    values: Sequence[Any] = list(df[schema.image[0]])
    decoded, errors = decode_images(values, lambda v: _decode(v, image_size))
    if errors and not skip_bad_images:
        raise InvalidArgument(f"cannot read {len(errors)} image(s): {errors[:5]}; fix or drop those rows")
    if errors:
        log.warning("skipping %d unreadable image(s): %s", len(errors), errors[:5])
    kept = [i for i, r in enumerate(decoded) if r is not None]
    if not kept:
        raise InvalidArgument(f"none of the {len(values)} images could be read: {errors[:5]}")
    images = torch.from_numpy(np.stack([decoded[i][0] for i in kept])).permute(0, 3, 1, 2).contiguous()
    sizes = [decoded[i][1] for i in kept]
    boxes = labels = None
    if with_labels:
        index = {c: k for k, c in enumerate(schema.classes)}
        boxes, labels = [], []
        for j, i in enumerate(kept):
            b = torch.tensor(_boxes(df[BOXES].iloc[i]), dtype=torch.float32).reshape(-1, 4)
            h, w = sizes[j]
            b *= torch.tensor([image_size / w, image_size / h] * 2)
            boxes.append(b)
            labels.append(torch.tensor([index[c] for c in _labels(df[schema.label].iloc[i])], dtype=torch.int64))
    return DetectionSet(images, sizes, boxes, labels, kept)


def flat_labels(df: pd.DataFrame, label: str) -> pd.Series:
    """Every box's label, for the class checks shared with classification."""
    return pd.Series([c for v in df[label] for c in _labels(v)], dtype=object)
