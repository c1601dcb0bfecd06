"""Fit policy: which rows a fit validates on and how a continued fit is judged.

- A fit without ``tuning_data`` holds out ``env.holdout_frac`` of its rows (at most
  ``MAX_HOLDOUT_ROWS``), the same ones for the same seed.
- A continued fit without ``tuning_data`` also validates on its parent version's
  validation rows, so model selection weighs the data the model knew beside the new data.
- A continued fit that did not beat its parent on that holdout keeps the parent's weights
  (``kept_parent``), and every continued fit re-scores the parent's validation rows with the
  new weights (``forgetting``).
- A resume continues the interrupted run with its own hyperparameters (scale-out keys only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .config import Config
from .data import drop_unlabelled
from .distributed import Scale, split_scale
from .errors import FailedPrecondition, InvalidArgument
from .model_store import ModelStore
from .storage import read_json
from .tasks import Task
from .training import RunResult

__all__ = ["MAX_HOLDOUT_ROWS", "check_new_path", "check_resume_options", "continued_outcome", "forgetting", "split_holdout", "with_parent_val"]

MAX_HOLDOUT_ROWS = 1000


def check_resume_options(hyperparameters: dict[str, Any] | None) -> Scale | None:
    """The scale-out a resume asks for (``None``: the run's own); anything else is refused."""
    scale, rest = split_scale(hyperparameters)
    if rest:
        raise InvalidArgument(
            f"a resume continues the interrupted run with its own hyperparameters; it takes only the scale-out keys "
            f"(env.num_gpus, env.devices, env.num_nodes, env.strategy), not {sorted(rest)}"
        )
    return scale


def check_new_path(store: ModelStore, path: str) -> None:
    """A new model never lands on a folder that holds a trained predictor."""
    if store.exists() and store.meta().get("current_version") is not None:
        raise FailedPrecondition(
            f"{path!r} already holds a trained predictor; load it to continue training, "
            "or choose another path for a new model"
        )


def split_holdout(
    train_df: pd.DataFrame, tuning_df: pd.DataFrame | None, label: str, cfg: Config, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, validation rows): ``tuning_data``'s labelled rows, or a holdout."""
    if tuning_df is not None:
        return train_df, drop_unlabelled(tuning_df, label)
    if len(train_df) < 2:
        raise InvalidArgument("train_data needs at least 2 labelled rows (one is held out for validation)")
    n_val = min(MAX_HOLDOUT_ROWS, max(1, int(round(len(train_df) * cfg.env.holdout_frac))))
    perm = np.random.default_rng(seed).permutation(len(train_df))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return train_df.iloc[train_idx].reset_index(drop=True), train_df.iloc[val_idx].reset_index(drop=True)


def with_parent_val(store: ModelStore, parent: int | None, val_df: pd.DataFrame, tuning_df: pd.DataFrame | None) -> pd.DataFrame:
    """A continued fit without tuning_data validates on its own holdout and on the parent
    version's validation rows (at most MAX_HOLDOUT_ROWS, the new ones first)."""
    if parent is None or tuning_df is not None:
        return val_df
    old = pd.read_parquet(store.version_dir(parent) / "val.parquet")
    old = old[[c for c in val_df.columns if c in old.columns]]
    return pd.concat([val_df, old], ignore_index=True).head(MAX_HOLDOUT_ROWS)


def continued_outcome(
    store: ModelStore, parent: int, task: Task, metric: str, result: RunResult, emit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """A continued fit's ``kept_parent`` and ``forgetting`` metrics. Training that did not
    beat the parent on the holdout leaves the parent's weights (the new version still
    records the new rows' lineage and holdout), and says so."""
    kept = result.averaged_steps == [0]
    if kept:
        emit({"kind": "state", "state": "kept_parent", "parent_version": parent, "val_score": result.best_score,
              "message": f"{result.steps} steps on the new rows did not beat version {parent} on the holdout; "
                         "the new version keeps its weights"})
    return {"kept_parent": kept, "forgetting": forgetting(store, parent, task, metric)}


def forgetting(store: ModelStore, parent: int, task: Task, metric: str) -> dict[str, Any]:
    """The parent version's validation rows re-scored with the new weights."""
    pdir = store.version_dir(parent)
    before = read_json(pdir / "metrics.json")["val_score"]
    old_val = pd.read_parquet(pdir / "val.parquet")
    after = task.score(old_val, metric)
    change = after - before
    return {
        "parent_version": parent,
        "metric": metric,
        "previous_val_rows": len(old_val),
        "before": before,
        "after": after,
        "change": change,
        "forgot": (change < 0) if task.higher_is_better(metric) else (change > 0),
    }
