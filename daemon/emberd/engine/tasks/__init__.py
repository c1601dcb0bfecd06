"""The kinds of model the facade drives, behind one interface (``Task``): ``TableTask``
(classification and regression over text, images, numbers and categories, one fused
network) and ``DetectionTask`` (an mmdet detector, in ``engine/detection``). The choice is
made here once, from the problem type."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..data import Schema
from ..detection.data import DETECTION
from .base import Task
from .table import TableTask

__all__ = ["TableTask", "Task", "create_task", "task_for"]


def _task_class(problem_type: str) -> type[Task]:
    if problem_type == DETECTION:
        from ..detection.task import DetectionTask  # it builds on .base: imported once this package is

        return DetectionTask
    return TableTask


def task_for(model: Any) -> Task:
    """The task over a trained (or loaded) model."""
    return _task_class(model.schema.problem_type)(model)


def create_task(schema: Schema, cfg: Config) -> Task:
    """A new model for a fit plan's ``schema`` and ``cfg``, in its task."""
    return _task_class(schema.problem_type).create(schema, cfg)
