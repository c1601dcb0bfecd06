"""Evaluation metrics on numpy predictions (torchmetrics where it has them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchmetrics.functional as tmf

from .errors import InvalidArgument

__all__ = ["score", "higher_is_better", "METRICS", "default_metric"]


def _cls(fn: Callable) -> Callable:
    def run(y: np.ndarray, proba: np.ndarray) -> float:
        return float(fn(torch.as_tensor(proba, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64), proba.shape[1]))

    return run


def _reg(fn: Callable) -> Callable:
    def run(y: np.ndarray, pred: np.ndarray) -> float:
        return float(fn(torch.as_tensor(pred, dtype=torch.float64).ravel(), torch.as_tensor(y, dtype=torch.float64).ravel()))

    return run


def _f1(p: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    if k == 2:
        return tmf.f1_score(p[:, 1], y, task="binary")
    return tmf.f1_score(p, y, task="multiclass", num_classes=k, average="macro")


def _roc_auc(p: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    if k == 2:
        return tmf.auroc(p[:, 1], y, task="binary")
    return tmf.auroc(p, y, task="multiclass", num_classes=k)


METRICS: dict[str, tuple[str, bool, Callable]] = {
    # name: (kind, higher_is_better, fn(y_true, proba_or_pred))
    "acc": ("cls", True, _cls(lambda p, y, k: tmf.accuracy(p.argmax(1), y, task="multiclass", num_classes=k))),
    "balanced_acc": ("cls", True, _cls(lambda p, y, k: tmf.accuracy(p.argmax(1), y, task="multiclass", num_classes=k, average="macro"))),
    "f1": ("cls", True, _cls(_f1)),
    "roc_auc": ("cls", True, _cls(_roc_auc)),
    "log_loss": ("cls", False, _cls(lambda p, y, k: torch.nn.functional.nll_loss(p.clamp_min(1e-15).log(), y))),
    "rmse": ("reg", False, _reg(lambda p, y: tmf.mean_squared_error(p, y, squared=False))),
    "mae": ("reg", False, _reg(tmf.mean_absolute_error)),
    "r2": ("reg", True, _reg(tmf.r2_score)),
    "pearsonr": ("reg", True, _reg(tmf.pearson_corrcoef)),
    "spearmanr": ("reg", True, _reg(tmf.spearman_corrcoef)),
}
ALIASES = {"accuracy": "acc", "rmse": "rmse", "root_mean_squared_error": "rmse", "pearson": "pearsonr", "spearman": "spearmanr"}


def canonical(name: str, problem_type: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METRICS:
        raise InvalidArgument(f"unknown metric {name!r}; valid: {sorted(METRICS)}")
    kind = METRICS[key][0]
    if (kind == "reg") != (problem_type == "regression"):
        raise InvalidArgument(f"metric {name!r} does not apply to a {problem_type} problem")
    return key


def default_metric(problem_type: str) -> str:
    return "rmse" if problem_type == "regression" else "acc"


def higher_is_better(name: str) -> bool:
    return METRICS[name][1]


def score(name: str, y: np.ndarray, out: np.ndarray) -> float:
    """``out``: class probabilities (N, K) for classification, predictions (N,) for regression."""
    return METRICS[name][2](y, out)
