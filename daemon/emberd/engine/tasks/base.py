"""``Task``: what the facade (``predictor.Predictor``) asks of a kind of model. One task wraps
one trained model; ``tasks.task_for`` picks the task for a model and ``tasks.create_task``
makes a new model for a fit plan's schema."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Config
from ..data import Schema
from ..distributed import Scale
from ..training import RunResult

__all__ = ["Task"]


class Task(ABC):
    """A model (``self.model``: it has ``schema``, ``cfg``, ``net``, ``write_assets``) and the
    operations whose work differs from one kind of model to another."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @classmethod
    @abstractmethod
    def create(cls, schema: Schema, cfg: Config) -> "Task":
        """A new model for ``schema`` (its new layers drawn from torch's current seed)."""

    @abstractmethod
    def continued(self, schema: Schema, cfg: Config) -> "Task":
        """A copy of this model to keep training under ``cfg`` (the parent stays as it is)."""

    @property
    @abstractmethod
    def default_metric(self) -> str:
        """What ``evaluate`` reports when asked for nothing and the predictor has no eval_metric."""

    @abstractmethod
    def check_rows(self, df: pd.DataFrame, *, with_label: bool, what: str = "data") -> None:
        """Refuse rows the model cannot read (``InvalidArgument``), before any work."""

    def encode(self, df: pd.DataFrame, *, with_labels: bool, skip_bad_images: bool) -> Any:
        """The rows as the network reads them (``.n`` rows, ``.kept_rows`` of ``df``)."""
        return self.model.encode(df, with_labels=with_labels, skip_bad_images=skip_bad_images)

    @abstractmethod
    def train(
        self, train_enc: Any, val_enc: Any, run: dict[str, Any], *, started: float, checkpoint_path: Path,
        resume_from: Path | None, emit: Callable[[dict[str, Any]], None], scale: Scale, rank: int,
    ) -> RunResult:
        """Train ``self.model`` in place for the run ``run`` (its metric, seed, time limit,
        parent); on return the net holds the selected weights."""

    @abstractmethod
    def score(self, df: pd.DataFrame, metric: str) -> float:
        """``metric`` (already checked) on labelled rows."""

    @abstractmethod
    def evaluate(self, df: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
        """Each of ``metrics`` (checked here: a bad name is ``InvalidArgument``) on ``df``."""

    @abstractmethod
    def higher_is_better(self, metric: str) -> bool:
        ...

    @abstractmethod
    def predict(self, df: pd.DataFrame) -> np.ndarray | list:
        """Labels, values or detections, one per row of ``df``."""

    @abstractmethod
    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Class probabilities (N, K)."""

    @abstractmethod
    def embed(self, df: pd.DataFrame) -> np.ndarray:
        """The features the head sees (N, D)."""

    @abstractmethod
    def export(self, out_dir: Path, rows: pd.DataFrame, *, backbones: bool, source: dict[str, Any] | None, opset: int) -> Path:
        """An ONNX bundle in ``out_dir``, parity-checked on ``rows`` (``export.export_model``
        checks the opset and calls this)."""

    @abstractmethod
    def dump(self, save_path: Path) -> list[Path]:
        """Each backbone (or the whole detector) in its own library's format under ``save_path``."""
