"""Atomic files: every write goes to a temporary file in the same folder, is fsynced, and
is renamed over its final name, so a reader (or a daemon restarted after kill -9) sees the
old content or the new, never a torn file.

Tensors are stored as safetensors and everything else as JSON; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "write_tensors",
    "read_tensors",
    "publish_dir",
    "fresh_staging_dir",
    "remove_stale_staging",
    "fsync_dir",
]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Have ``write`` fill a temp file beside ``path``, fsync it, rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync folder)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    _atomic_write(path, write)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(path: str | os.PathLike) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read())


def write_tensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a flat name -> tensor mapping as one safetensors file, atomically."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    # safetensors refuses tensors that share storage (tied weights): give each its own.
    seen: set[int] = set()
    for k, v in flat.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen:
            flat[k] = v.clone()
        seen.add(ptr)
    _atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=dict(metadata or {})))


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def publish_dir(staging: Path, final: Path) -> None:
    """Move a fully written staging folder to its final name in one rename.

    ``final`` must not exist: published folders are immutable (a model version is never
    rewritten, only a new one added)."""
    if final.exists():
        raise FileExistsError(f"{final} already exists; published folders are immutable")
    for p in staging.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    os.rename(staging, final)
    fsync_dir(final.parent)


def fresh_staging_dir(parent: Path, name: str) -> Path:
    """An empty hidden folder beside ``parent/name`` for building it before publishing."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".staging"))


def remove_stale_staging(parent: Path) -> None:
    """Delete staging folders a killed process left behind (they were never published)."""
    if parent.is_dir():
        for p in parent.glob(".*.staging"):
            shutil.rmtree(p, ignore_errors=True)
