"""Every check a fit makes before any work, without loading weights: the engine runs it
first in ``Predictor.fit``, and the daemon runs it on the RPC thread so that bad input
fails the call itself (not a job, minutes later)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .config import Config
from .data import Schema, drop_unlabelled, infer_schema
from .detection.data import DETECTION, is_detection_frame
from .detection.plan import plan_detection
from .distributed import Scale, split_scale
from .errors import FailedPrecondition, InvalidArgument, Unsupported
from .metrics import canonical, default_metric
from .models.image import check_image_checkpoint
from .models.text import resolve_text_checkpoint


@dataclass(frozen=True)
class FitPlan:
    schema: Schema
    cfg: Config
    metric: str
    continued: bool
    scale: Scale  # processes and nodes to train on (the env.* scale-out keys; not saved with the model)


def plan_fit(
    *,
    label: str | None,
    train_df: pd.DataFrame,
    tuning_df: pd.DataFrame | None,
    hyperparameters: dict[str, Any] | None,
    problem_type: str | None = None,
    eval_metric: str | None = None,
    column_types: dict[str, str] | None = None,
    current: tuple[Schema, Config] | None = None,
    time_limit: float | None = None,
    seed: int = 0,
) -> FitPlan:
    """``current``: the schema and config of the model a continued fit starts from.
    Every option is checked here (type, range, finite), before anything is written."""
    check_run_options(time_limit=time_limit, seed=seed)
    if column_types:
        unknown = [c for c in column_types if c not in train_df.columns]
        if unknown:
            raise InvalidArgument(f"column_types names column(s) {unknown} that train_data lacks; its columns are {list(train_df.columns)}")
    scale, hyperparameters = split_scale(hyperparameters)
    if label is None:
        raise InvalidArgument("a label is required: name the column to predict")
    if label not in train_df.columns:
        raise InvalidArgument(f"label column {label!r} is not in train_data; its columns are {list(train_df.columns)}")
    if train_df[label].isna().all():
        raise InvalidArgument(f"label column {label!r} is all missing (NaN) in train_data")
    detection = current[0].problem_type == DETECTION if current else (problem_type == DETECTION or (problem_type is None and is_detection_frame(train_df)))
    if detection:
        if current is not None and problem_type and problem_type != DETECTION:
            raise FailedPrecondition(f"this model is {DETECTION}; a continued fit cannot change it to {problem_type}")
        if current is not None:
            _refuse_structural(current[1], dict(hyperparameters or {}))
        if scale is not None and scale.world_size > 1:
            raise Unsupported(f"{DETECTION} trains on one process for now; drop the env.devices/env.num_nodes settings")
        schema, cfg, metric = plan_detection(
            label=label, train_df=train_df, tuning_df=tuning_df, hyperparameters=hyperparameters,
            eval_metric=eval_metric, column_types=column_types, current=current,
        )
        return FitPlan(schema, cfg, metric, continued=current is not None, scale=Scale())
    if current is None:
        cfg = Config.from_overrides(hyperparameters)
        schema = infer_schema(train_df, label, problem_type, column_types, cfg.names)
        if schema.text:
            resolve_text_checkpoint(cfg.text.checkpoint_name)
        if schema.image:
            check_image_checkpoint(cfg.image.checkpoint_name)
    else:
        schema, base = current
        if label != schema.label:
            raise FailedPrecondition(f"this model predicts {schema.label!r}; a continued fit cannot switch to {label!r}")
        if problem_type and problem_type != schema.problem_type:
            raise FailedPrecondition(f"this model is {schema.problem_type}; a continued fit cannot change it to {problem_type}")
        _refuse_structural(base, hyperparameters)
        cfg = Config.from_overrides(hyperparameters, base=base)
    metric = canonical(eval_metric or default_metric(schema.problem_type), schema.problem_type)
    schema.check_columns(train_df, with_label=True, what="train_data")
    schema.encode_labels(drop_unlabelled(train_df, label)[label])  # unseen classes, before any work
    if tuning_df is not None:
        schema.check_columns(tuning_df, with_label=True, what="tuning_data")
        schema.encode_labels(drop_unlabelled(tuning_df, label)[label])
    if len(drop_unlabelled(train_df, label)) < 2:
        raise InvalidArgument("train_data needs at least 2 labelled rows")
    return FitPlan(schema, cfg, metric, continued=current is not None, scale=scale or Scale())


MAX_TIME_LIMIT_S = 30 * 24 * 3600.0  # a month
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def check_run_options(*, time_limit: float | None, seed: int) -> None:
    """``time_limit``: None (no limit) or finite seconds in (0, a month]; ``seed`` an
    integer in [0, 2**32 - 1]."""
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not math.isfinite(time_limit) or not 0 < time_limit <= MAX_TIME_LIMIT_S:
            raise InvalidArgument(
                f"time_limit must be finite seconds in (0, {MAX_TIME_LIMIT_S:g}] (or none for no limit), got {time_limit!r}"
            )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")


def _refuse_structural(base: Config, hyperparameters: dict[str, Any]) -> None:
    changes = base.structural_changes(hyperparameters)
    if changes:
        raise FailedPrecondition(
            "a continued fit keeps the model's structure; these overrides would change it: "
            + "; ".join(changes)
            + ". Fit a new model (another path or name) to change them, or drop them."
        )
