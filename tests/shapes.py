"""A synthetic object-detection set with exact boxes: circles, squares and triangles of
random colours and sizes on noisy backgrounds, drawn with Pillow from a fixed seed.

``shapes_frame(n, seed)`` gives Ember's detection DataFrame form (``image`` as PNG bytes,
``boxes`` as lists of ``[x1, y1, x2, y2]`` in pixels, ``label`` as lists of class names);
``write_coco(frame, folder)`` writes the same rows as COCO-style annotations beside the
image files. The same seed gives the same bytes on every machine.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
SIZE = 128


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _draw(rng: np.random.Generator, classes: tuple[str, ...]) -> tuple[bytes, list[list[float]], list[str]]:
    base = rng.integers(30, 110, size=3)
    noise = rng.integers(-20, 21, size=(SIZE, SIZE, 3))
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    boxes: list[list[float]] = []
    labels: list[str] = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            s = int(rng.integers(22, 52))
            x, y = int(rng.integers(2, SIZE - s - 2)), int(rng.integers(2, SIZE - s - 2))
            box = [float(x), float(y), float(x + s), float(y + s)]
            if all(_iou(box, b) < 0.05 for b in boxes):
                break
        else:
            continue
        kind = classes[int(rng.integers(len(classes)))]
        color = tuple(int(c) for c in rng.integers(150, 256, size=3))
        if kind == "circle":
            draw.ellipse([x, y, x + s - 1, y + s - 1], fill=color)
        elif kind == "square":
            draw.rectangle([x, y, x + s - 1, y + s - 1], fill=color)
        else:
            draw.polygon([(x, y + s - 1), (x + s - 1, y + s - 1), (x + (s - 1) / 2, y)], fill=color)
        boxes.append(box)
        labels.append(kind)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), boxes, labels


def shapes_frame(n: int, seed: int, classes: tuple[str, ...] = CLASSES) -> pd.DataFrame:
    """``n`` images with 1-3 shapes each (of ``classes``), from ``seed``."""
    rng = np.random.default_rng(seed)
    rows = [_draw(rng, classes) for _ in range(n)]
    return pd.DataFrame({"image": [r[0] for r in rows], "boxes": [r[1] for r in rows], "label": [r[2] for r in rows]})


def write_coco(frame: pd.DataFrame, folder: Path) -> Path:
    """The frame's images as PNG files under ``folder/images`` and its boxes as a COCO
    annotation file ``folder/annotations.json`` (boxes as ``[x, y, w, h]``); returns that file."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = sorted({c for labels in frame["label"] for c in labels})
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(names)]
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns = [], []
    for i, row in frame.iterrows():
        name = f"images/{i:04d}.png"
        (folder / name).write_bytes(row["image"])
        images.append({"id": i + 1, "file_name": name, "width": SIZE, "height": SIZE})
        for box, label in zip(row["boxes"], row["label"]):
            x1, y1, x2, y2 = box
            box = {"bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat_id[label], **box})
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path
