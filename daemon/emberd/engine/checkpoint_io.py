"""Lightning checkpoints without pickle: one safetensors file per checkpoint.

A checkpoint is a nested structure of dicts, lists, tuples, scalars and tensors. Tensors go
into the safetensors body under their path; the rest is a JSON skeleton stored in the
file's metadata, with ``{"$t": key}`` where a tensor was. Anything else (an arbitrary
object) is refused: nothing is ever unpickled on load. Writes are atomic (``storage``).
Training wraps it in Lightning's ``AsyncCheckpointIO``: the step that checkpoints pays for a
copy of the tensors, and a thread writes the file while training goes on.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors import safe_open

from .storage import write_tensors

__all__ = ["SafeCheckpointIO", "save_checkpoint", "load_checkpoint"]

_META_KEY = "ember.checkpoint"


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return {"$t": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "$t" not in obj:
            return {k: _flatten(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        items = []
        for i, (k, v) in enumerate(obj.items()):
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"checkpoint key {k!r} at {path} is not a scalar")
            items.append([k, _flatten(v, f"{path}/{i}", tensors)])
        return {"$d": items}
    if isinstance(obj, tuple):
        return {"$tuple": [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        return obj.item()
    raise TypeError(
        f"cannot store {type(obj).__name__} at {path} in a checkpoint without pickle; "
        "keep callback and module state to tensors, scalars, lists and dicts"
    )


def _unflatten(obj: Any, tensors: Any) -> Any:
    if isinstance(obj, dict):
        if "$t" in obj:
            return tensors.get_tensor(obj["$t"])
        if "$d" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["$d"]}
        if "$tuple" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["$tuple"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(checkpoint, "", tensors)
    write_tensors(path, tensors, metadata={_META_KEY: json.dumps(skeleton)})


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if _META_KEY not in meta:
            raise ValueError(f"{path} is not an Ember checkpoint")
        return _unflatten(json.loads(meta[_META_KEY]), f)


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint storage, as atomic safetensors files (no ``torch.save``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """``storage_options`` may hold ``on_written``, called once the file is whole (on the
        writer thread when ``AsyncCheckpointIO`` wraps this)."""
        save_checkpoint(checkpoint, path)
        if storage_options and "on_written" in storage_options:
            storage_options["on_written"]()

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None) -> dict[str, Any]:
        return load_checkpoint(path)

    def remove_checkpoint(self, path: Any) -> None:
        if os.path.exists(path):
            os.unlink(path)
