"""Checks shared by the ONNX export tests."""

import json
from pathlib import Path

import numpy as np


def check_bundle(onnx_path, p, rows, *, regression=False):
    """onnx.checker (full), the export's own parity record, and the bundle's runner (its own
    tokenization) against the torch predictor on the same real rows."""
    import onnx

    from ember.onnx import OnnxPredictor

    bundle = Path(onnx_path).parent
    onnx.checker.check_model(str(onnx_path), full_check=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    par = manifest["parity"]
    print(f"ONNX parity: {par}")
    assert par["rows"] == len(rows) >= 200 and par["max_abs_diff"] <= 1e-4 and par["labels_equal"]
    ours, theirs = OnnxPredictor(bundle).predict(rows), p.predict(rows)
    if regression:
        assert np.abs(ours.to_numpy() - theirs.to_numpy()).max() <= 1e-4
    else:
        assert (ours.to_numpy() == theirs.to_numpy()).all()
        proba = OnnxPredictor(bundle).predict_proba(rows).to_numpy()
        assert np.abs(proba - p.predict_proba(rows).to_numpy()).max() <= 1e-4
    return bundle, manifest
