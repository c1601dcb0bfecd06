"""A detection fit's checks before any work (the part of ``plan.plan_fit`` for
``object_detection``): columns, boxes, classes, the detector's name, the metric."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..config import Config
from ..data import Schema
from ..errors import InvalidArgument
from .data import check_detection_rows, detection_schema, flat_labels
from .detectors import check_detector_checkpoint
from .evaluation import check_metrics
from .mm import mmdet


def plan_detection(
    *,
    label: str,
    train_df: pd.DataFrame,
    tuning_df: pd.DataFrame | None,
    hyperparameters: dict[str, Any],
    eval_metric: str | None,
    column_types: dict[str, str] | None,
    current: tuple[Schema, Config] | None,
) -> tuple[Schema, Config, str]:
    mmdet()  # FAILED_PRECONDITION naming the install command when the extra is missing
    if current is None:
        cfg = Config.from_overrides(hyperparameters)
        schema = detection_schema(train_df, label, column_types)
        check_detector_checkpoint(cfg.detection.checkpoint_name)
    else:
        schema, cfg = current
        cfg = Config.from_overrides(hyperparameters, base=cfg)
    metric = check_metrics([eval_metric or "map"])[0]
    check_detection_rows(train_df, schema, with_label=True, what="train_data")
    schema.encode_labels(flat_labels(train_df, label))  # unseen classes, before any work
    if tuning_df is not None:
        check_detection_rows(tuning_df, schema, with_label=True, what="tuning_data")
        schema.encode_labels(flat_labels(tuning_df, label))
    if len(train_df) < 2:
        raise InvalidArgument("train_data needs at least 2 images")
    return schema, cfg, metric
