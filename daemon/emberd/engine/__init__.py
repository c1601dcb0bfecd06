"""Ember's in-process engine: the continuous-training workflow of multimodal models.

``Predictor`` has AutoGluon MultiModalPredictor's methods (fit, continued fit, resume,
predict, predict_proba, evaluate, extract_embedding, dump_model); the daemon runs its jobs
on it.
"""

from .config import Config
from .detection import data as _detection_data  # noqa: F401 - registers the COCO (.json) table reader
from .errors import EmberError, FailedPrecondition, InvalidArgument, NotFound, Unsupported
from .predictor import Predictor

__all__ = ["Config", "EmberError", "FailedPrecondition", "InvalidArgument", "NotFound", "Predictor", "Unsupported"]
