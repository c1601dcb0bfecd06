"""Ember's Python client: ``MultiModalPredictor`` (AutoGluon's continuous-training
workflow over gRPC), the low-level ``Client``, and the generated stubs in ``ember.v1``."""

from .client import Client, EmberRpcError
from .predictor import MultiModalPredictor

__all__ = ["Client", "EmberRpcError", "MultiModalPredictor"]
