"""Run an Ember ONNX bundle with onnxruntime alone: no torch, no daemon.

A bundle is what ``Export`` (``MultiModalPredictor.export_onnx``, ``ember export``) writes:

    model.onnx       the network, raw features in, logits/probabilities (or the regression
                     prediction in label units) out; dynamic batch and sequence axes
    manifest.json    inputs, outputs, label map, preprocessing parameters, versions, parity
    tokenizer/       the HuggingFace tokenizer files (text models)
    backbones/       optional: each backbone alone (``hf_text.onnx``, ``timm_image.onnx``)

``OnnxPredictor`` goes from raw rows (a DataFrame) to labels exactly as the model inside
Ember does: the same tokenization and longest-first pair truncation, the same image
decoding, the same numeric standardization and category indices::

    from ember.onnx import OnnxPredictor
    OnnxPredictor("bundle").predict(df)

or ``ember onnx-predict BUNDLE TABLE``. It needs numpy, pandas, onnxruntime, and
``tokenizers`` (text) or Pillow (images): the ``[onnx]`` extra of ``ember-client``. The
preprocessing itself is ``ember.preprocess``, which the daemon's engine shares.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

# image_array, image_source, load_image and truncate_pair are importable from here as before
from .preprocess import FORMAT, BundleInputs, image_array, image_source, load_image, truncate_pair

__all__ = ["FORMAT", "OnnxPredictor", "image_array", "image_source", "load_image", "truncate_pair"]


class OnnxPredictor:
    """Predict with a bundle. ``providers``: onnxruntime execution providers (CPU by
    default); ``threads``: intra-op threads (0: onnxruntime's choice)."""

    def __init__(self, bundle: str | os.PathLike, *, providers: Sequence[str] | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        self.inputs = BundleInputs(bundle)
        self.path, self.manifest = self.inputs.path, self.inputs.manifest
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.inputs.graph), opts, providers=list(providers or ["CPUExecutionProvider"]))

    @property
    def columns(self) -> list[str]:
        return self.inputs.columns

    def run(self, data: pd.DataFrame, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Every graph output for every row, in row order."""
        return self.inputs.run(self.session, data, batch_size)

    def predict(self, data: pd.DataFrame, batch_size: int = 32) -> pd.Series:
        """Class labels (classification) or targets in label units (regression)."""
        m = self.manifest
        out = self.run(data, batch_size)
        if m["problem_type"] == "regression":
            values = out["prediction"].astype(np.float64)
        else:
            values = np.asarray(m["classes"], dtype=object)[out["probabilities"].argmax(1)]
            if not isinstance(m["classes"][0], str):
                values = values.astype(type(m["classes"][0]))
        return pd.Series(values, index=data.index, name=m["label"])

    def predict_proba(self, data: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
        m = self.manifest
        if m["problem_type"] == "regression":
            raise ValueError("predict_proba is for classification; this model is regression: use predict")
        return pd.DataFrame(self.run(data, batch_size)["probabilities"], index=data.index, columns=m["classes"])
