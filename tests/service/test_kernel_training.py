"""The engine trains the same with ember_kernels' ops as with their pure-torch references (the
ops alone: tests/unit/test_kernels.py)."""

import logging

import torch

from emberd.engine import Predictor, features

from ..daemon_helpers import tabular


def test_training_with_ops_and_with_references_gives_the_same_loss_curve(tmp_path, caplog, monkeypatch):
    """A tabular + categorical fusion model (dropout on) trained twice on a fixed seed."""
    caplog.set_level(logging.INFO, logger="emberd.engine")
    monkeypatch.setattr(features, "_announced", set())  # forget what earlier tests announced
    df = tabular(n=400)
    hist = {}
    for kernels in ("ops", "reference"):
        p = Predictor(label="label", path=tmp_path / kernels, verbosity=0)
        # fit seeds training, but the heads are initialized before that, from the global
        # generator's state: start both runs from the same one
        torch.manual_seed(0)
        p.fit(df, hyperparameters={"env.kernels": kernels, "optim.max_epochs": 2, "optim.lr": 1e-3}, seed=3)
        assert p._model.net.fusion is not None
        hist[kernels] = p.fit_summary["history"]
        assert any(f"fusion head on cpu: {impl}" in r.getMessage() for r in caplog.records
                   for impl in (["ember_kernels"] if kernels == "ops" else ["eager torch reference"]))
    assert len(hist["ops"]) == len(hist["reference"]) >= 4
    for a, b in zip(hist["ops"], hist["reference"]):
        assert a["step"] == b["step"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(b["loss"]))
        assert abs(a["score"] - b["score"]) <= 1e-5

