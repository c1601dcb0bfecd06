"""Raw rows to the inputs of Ember's networks, with numpy, pandas, Pillow and ``tokenizers``
only: no torch, no gRPC, no daemon.

One definition of image decoding, longest-first pair truncation and a bundle's
tokenizer-free preprocessing (special tokens, padding, numeric standardization, category
indices), shared by the client's ONNX runner (``ember.onnx``) and the daemon's engine
(training decodes images and truncates pairs with these functions; export's parity check
runs each bundle through ``BundleInputs``): a bundle's predictions are made from exactly the
inputs training saw. Pillow and ``tokenizers`` are imported when first needed (the
client's ``[onnx]`` extra).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "ember-onnx/1"

__all__ = ["FORMAT", "BundleInputs", "image_array", "image_source", "load_image", "truncate_pair"]


def image_source(value: Any) -> Any:
    """What Pillow opens for an image cell: its bytes, an inline image in a text table
    (a base64 data URI, ``data:image/png;base64,...``, RFC 2397), or a path as given.
    Raises ``ValueError`` for a data URI that is not base64."""
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(value)
    if isinstance(value, str) and value.startswith("data:"):
        head, comma, payload = value.partition(",")
        if not comma or not head.endswith(";base64"):
            raise ValueError(f"inline image {head[:40]!r}: give a base64 data URI, data:image/png;base64,<bytes>")
        return io.BytesIO(base64.b64decode(payload, validate=True))
    return value


def load_image(value: Any, size: int) -> np.ndarray:
    """Decode one image (path, bytes or base64 data URI) to uint8 HWC RGB: shorter side
    resized and center-cropped to ``size`` (bilinear); large JPEGs are decoded at a reduced
    scale. Raises ``OSError``/``ValueError`` if it cannot be read. Ember's training uses this too."""
    from PIL import Image

    with Image.open(image_source(value)) as img:
        return image_array(img, size)


def image_array(img: Any, size: int) -> np.ndarray:
    """An opened ``PIL.Image`` as ``load_image`` returns it (the daemon opens images under
    its read policy, then shares this step with the ONNX runner)."""
    from PIL import Image, ImageOps

    if img.format == "JPEG":
        img.draft("RGB", (size, size))
    img = ImageOps.exif_transpose(img).convert("RGB")
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def truncate_pair(la: int, lb: int, budget: int) -> tuple[int, int]:
    """HF tokenizers' longest-first truncation of a pair to ``budget`` tokens."""
    if la + lb <= budget:
        return la, lb
    if la <= lb:
        na = min(la, budget // 2)
        return na, min(lb, budget - na)
    nb = min(lb, budget // 2)
    return min(la, budget - nb), nb


class BundleInputs:
    """An ONNX bundle's manifest and tokenizer: rows to its graph's named inputs (see
    ``ember.onnx`` for what a bundle holds)."""

    def __init__(self, bundle: str | os.PathLike) -> None:
        self.path = Path(bundle)
        if self.path.suffix == ".onnx":  # the graph inside a bundle: its folder
            self.path = self.path.parent
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(f"{self.path} is not an Ember ONNX bundle (no manifest.json); make one with `ember export MODEL DEST`")
        self.manifest = json.loads(manifest.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"bundle format {self.manifest.get('format')!r} is not {FORMAT!r}; re-export it with this Ember")
        self.graph = self.path / self.manifest["graph"]
        self.text = self.manifest.get("text")
        self.tokenizer = None
        if self.text:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(self.path / self.text["tokenizer"]))
            self.tokenizer.no_truncation()
            self.tokenizer.no_padding()

    @property
    def columns(self) -> list[str]:
        m = self.manifest
        return [c for part in ("text", "image", "numeric", "categorical") if m.get(part) for c in m[part]["columns"]]

    def _check(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise ValueError(f"data lacks column(s) {missing} that this model reads; it has {list(df.columns)}")

    def _tokens(self, df: pd.DataFrame) -> list[list[np.ndarray]]:
        """Per text column, each row's token ids without special tokens (cut to the
        per-column cap, as Ember's encoding does)."""
        t = self.text
        cross_pair = t["pair_mode"] == "cross" and len(t["columns"]) == 2
        cap = None if cross_pair else t["max_len"] - 2
        out = []
        for col in t["columns"]:
            values = ["" if pd.isna(v) else str(v) for v in df[col].tolist()]
            enc = self.tokenizer.encode_batch(values, add_special_tokens=False)
            out.append([np.asarray(e.ids[:cap] if cap else e.ids, dtype=np.int64) for e in enc])
        return out

    def _collate_text(self, tokens: list[list[np.ndarray]], rows: np.ndarray) -> dict[str, np.ndarray]:
        t = self.text
        max_len, cls, sep, pad = t["max_len"], t["cls_id"], t["sep_id"], t["pad_id"]
        groups = [tokens] if len(t["sequences"]) == 1 else [[c] for c in tokens]
        seqs = []
        for g in groups:
            pieces = []
            for r in rows:
                if len(g) == 1:
                    pieces.append((g[0][r][: max_len - 2], None))
                else:
                    la, lb = truncate_pair(len(g[0][r]), len(g[1][r]), max_len - 3)
                    pieces.append((g[0][r][:la], g[1][r][:lb]))
            seqs.append(pieces)
        width = max(len(a) + 2 + (0 if b is None else len(b) + 1) for pieces in seqs for a, b in pieces)
        feeds: dict[str, np.ndarray] = {}
        for s, pieces in enumerate(seqs):
            ids = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for i, (a, b) in enumerate(pieces):
                row = [cls, *a, sep] if b is None else [cls, *a, sep, *b, sep]
                ids[i, : len(row)] = row
                mask[i, : len(row)] = 1
                if b is not None:
                    types[i, len(a) + 2 : len(row)] = 1
            names = t["inputs"][s]
            feeds[names["input_ids"]] = ids
            feeds[names["attention_mask"]] = mask
            if "token_type_ids" in names:
                feeds[names["token_type_ids"]] = types
        return feeds

    def _images(self, df: pd.DataFrame) -> list[np.ndarray]:
        im = self.manifest["image"]
        out = []
        for col in im["columns"]:
            decoded, bad = [], []
            for v in df[col].tolist():
                try:
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        raise ValueError("missing value")
                    decoded.append(load_image(v, im["size"]))
                except (OSError, ValueError) as e:
                    bad.append(f"{v if isinstance(v, str) else type(v).__name__} ({type(e).__name__}: {e})")
            if bad:
                raise ValueError(f"{len(bad)} image(s) in column {col!r} cannot be read: {bad[:5]}; fix or drop those rows")
            out.append(np.stack(decoded))
        return out

    def _numeric(self, df: pd.DataFrame) -> np.ndarray:
        n = self.manifest["numeric"]
        cols = []
        for col, mean, std in zip(n["columns"], n["mean"], n["std"]):
            v = (pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64) - mean) / std
            cols.append(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0))
        return np.stack(cols, 1).astype(np.float32)

    def _categorical(self, df: pd.DataFrame) -> np.ndarray:
        c = self.manifest["categorical"]
        cols = []
        for col in c["columns"]:
            index = {str(v): i + 1 for i, v in enumerate(c["categories"][col])}
            cols.append([0 if pd.isna(v) else index.get(str(v), 0) for v in df[col].tolist()])
        return np.asarray(cols, dtype=np.int64).T.copy()

    def run(self, session: Any, data: pd.DataFrame, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Every graph output for every row, in row order: ``session`` (an onnxruntime
        ``InferenceSession`` of the bundle's graph) runs on batches of rows of similar length."""
        df = data.reset_index(drop=True)
        self._check(df)
        n = len(df)
        if n == 0:
            raise ValueError("no rows to predict")
        tokens = self._tokens(df) if self.text else None
        images = self._images(df) if self.manifest.get("image") else []
        numeric = self._numeric(df) if self.manifest.get("numeric") else None
        categorical = self._categorical(df) if self.manifest.get("categorical") else None
        # rows of similar length batch together: little compute on padding
        lengths = np.zeros(n, dtype=np.int64) if tokens is None else np.max([[len(x) for x in col] for col in tokens], 0)
        order = np.argsort(lengths, kind="stable")
        out: dict[str, np.ndarray] = {}
        for s in range(0, n, batch_size):
            rows = order[s : s + batch_size]
            feeds: dict[str, np.ndarray] = {}
            if tokens is not None:
                feeds.update(self._collate_text(tokens, rows))
            for name, im in zip(self.manifest["image"]["inputs"] if images else [], images):
                feeds[name] = im[rows]
            if numeric is not None:
                feeds[self.manifest["numeric"]["input"]] = numeric[rows]
            if categorical is not None:
                feeds[self.manifest["categorical"]["input"]] = categorical[rows]
            names = [o["name"] for o in self.manifest["outputs"]]
            for name, y in zip(names, session.run(names, feeds)):
                if name not in out:
                    out[name] = np.empty((n, *y.shape[1:]), dtype=y.dtype)
                out[name][rows] = y
        return out
