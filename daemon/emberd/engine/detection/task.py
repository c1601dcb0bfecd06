"""``DetectionTask``: object detection with an mmdet detector (``DetectionModel``): boxes per
row, COCO mAP, no probabilities or embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config
from ..data import Schema
from ..distributed import Scale, set_threads
from ..errors import FailedPrecondition, Unsupported
from ..tasks.base import Task
from ..training import RunResult
from .data import DETECTION, check_detection_rows
from .evaluation import check_metrics, coco_map
from .model import DetectionModel
from .training import train_detector

__all__ = ["DetectionTask"]


class DetectionTask(Task):
    model: DetectionModel

    @classmethod
    def create(cls, schema: Schema, cfg: Config) -> "DetectionTask":
        return cls(DetectionModel.create(schema, cfg))

    def continued(self, schema: Schema, cfg: Config) -> "DetectionTask":
        return DetectionTask(self.model.continued(cfg))

    @property
    def default_metric(self) -> str:
        return "map"

    def check_rows(self, df: pd.DataFrame, *, with_label: bool, what: str = "data") -> None:
        check_detection_rows(df, self.model.schema, with_label=with_label, what=what)

    def train(
        self, train_enc: Any, val_enc: Any, run: dict[str, Any], *, started: float, checkpoint_path: Path,
        resume_from: Path | None, emit: Callable[[dict[str, Any]], None], scale: Scale, rank: int,
    ) -> RunResult:
        return train_detector(
            self.model,
            train_set=train_enc,
            val_set=val_enc,
            continued=run["parent_version"] is not None,
            time_limit=run["time_limit"],
            started=started,
            checkpoint_path=checkpoint_path,
            resume_from=resume_from,
            seed=run["seed"],
            emit=emit,
        )

    # ---- inference --------------------------------------------------------------------
    def _scores(self, df: pd.DataFrame, names: list[str]) -> dict[str, float]:
        """COCO mAP and friends (``evaluation.METRICS``) on labelled rows."""
        m = self.model
        check_detection_rows(df, m.schema, with_label=True, what="data")
        ds = m.encode(df, with_labels=True, skip_bad_images=False)
        set_threads(m.cfg)
        scores = coco_map(m.detect(ds), m.targets(ds), len(m.schema.classes))
        return {name: scores[name] for name in names}

    def score(self, df: pd.DataFrame, metric: str) -> float:
        return self._scores(df, [metric])[metric]

    def evaluate(self, df: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
        return self._scores(df, check_metrics(metrics))

    def higher_is_better(self, metric: str) -> bool:
        return True  # every COCO metric is a precision or a recall

    def predict(self, df: pd.DataFrame) -> list[list[dict[str, Any]]]:
        """Each row's detections: ``{"bbox": [x1, y1, x2, y2], "score": s, "class": name}``
        (original pixels)."""
        m = self.model
        check_detection_rows(df, m.schema, with_label=False, what="data")
        ds = m.encode(df, with_labels=False, skip_bad_images=False)
        set_threads(m.cfg)
        classes = m.schema.classes
        return [
            [{"bbox": [float(v) for v in b], "score": float(sc), "class": classes[int(c)]} for b, sc, c in zip(*found)]
            for found in m.detect(ds)
        ]

    def predict_proba(self, df: pd.DataFrame) -> Any:
        raise FailedPrecondition(f"predict_proba is for classification; this model is {DETECTION}: use predict")

    def embed(self, df: pd.DataFrame) -> Any:
        raise Unsupported("extract_embedding is for classification and regression models; a detector gives boxes: use predict")

    # ---- out to other formats ---------------------------------------------------------
    def export(self, out_dir: Path, rows: pd.DataFrame, *, backbones: bool, source: dict[str, Any] | None, opset: int) -> Path:
        from .export import publish_onnx

        return publish_onnx(self.model, out_dir, rows, opset=opset)

    def dump(self, save_path: Path) -> list[Path]:
        from .dump import dump_detector

        return [dump_detector(self.model, save_path)]
