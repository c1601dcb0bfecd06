"""Ember's Python client: ``MultiModalPredictor`` (AutoGluon's continuous-training
workflow over gRPC), the low-level ``Client``, and the generated stubs in ``ember.v1``.

``ember.preprocess`` and ``ember.onnx`` need neither gRPC nor torch; so that importing them
(as the daemon's engine imports ``ember.preprocess``) does not load gRPC, the names below are
imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client, EmberRpcError
    from .predictor import MultiModalPredictor

__all__ = ["Client", "EmberRpcError", "MultiModalPredictor"]
_HOME = {"Client": ".client", "EmberRpcError": ".client", "MultiModalPredictor": ".predictor"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name], __name__), name)
