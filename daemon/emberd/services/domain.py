"""The daemon's domain terms, shared by its services and their callers (no protobuf, no
SQL here): model names, table references, fit and scale-out options, and the registry's
typed records."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..engine.config import MINILM
from ..engine.errors import InvalidArgument
from ..registry import ArtifactRecord, DatasetRecord, JobRecord, ModelRecord, VersionRecord

__all__ = [
    "NAME", "CHECKPOINT_KEYS", "check_name", "names_a_path", "ScaleOptions", "FitOptions", "TableRef",
    "ArtifactRecord", "DatasetRecord", "JobRecord", "ModelRecord", "VersionRecord",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # matched in full (fullmatch): no trailing newline

# Hyperparameters that may name a folder on the daemon's host, and the names (not paths)
# each takes: the shipped MiniLM for text; for images and detectors any bare name (a timm
# architecture, a detector preset: the engine never reads a folder for a name without a
# separator).
CHECKPOINT_KEYS = ("model.hf_text.checkpoint_name", "model.timm_image.checkpoint_name", "model.mmdet_image.checkpoint_name")


def names_a_path(key: str, value: str) -> bool:
    if key == "model.hf_text.checkpoint_name":
        return value != MINILM
    return "/" in value or os.sep in value or value.startswith((".", "~"))


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise InvalidArgument(
            f"{what} {name!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, no '..'",
            field=what.replace(" ", "_"),
        )
    return name


@dataclass(frozen=True)
class ScaleOptions:
    """The request's scale-out fields; zero or empty: not given (hyperparameters, then defaults)."""

    devices: int = 0
    num_nodes: int = 0
    strategy: str = ""

    def hyperparameters(self) -> dict[str, Any]:
        given = {"env.devices": self.devices, "env.num_nodes": self.num_nodes, "env.strategy": self.strategy}
        return {k: v for k, v in given.items() if v}


@dataclass(frozen=True)
class FitOptions:
    label: str = ""
    problem_type: str = ""
    eval_metric: str = ""
    time_limit_s: float = 0.0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    column_types: dict[str, str] = field(default_factory=dict)
    scale: ScaleOptions = ScaleOptions()


@dataclass(frozen=True)
class TableRef:
    """A table a request names: an uploaded dataset, a path under the data roots, or inline rows."""

    dataset_id: str = ""
    path: str = ""
    json_records: str = ""
    parquet: bytes = b""

    def __bool__(self) -> bool:
        return bool(self.dataset_id or self.path or self.json_records or self.parquet)
