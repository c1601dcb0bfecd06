"""Tables the daemon holds: content-addressed files ``datasets/<sha256>.<format>``,
written atomically, verified against the digest the client sent; and the one place that
turns a request's table reference (dataset id, confined path, inline rows) into a file
path and a DataFrame."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow.parquet as pq

from .engine.data import load_table, read_jsonl
from .engine.data import records_frame as engine_records_frame
from .engine.errors import DataLoss, InvalidArgument, NotFound, PermissionDenied
from .engine.faults import fault
from .engine.storage import fsync_dir
from .registry import Registry

FORMATS = ("parquet", "csv", "tsv", "jsonl")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def records_frame(json_records: str, what: str) -> pd.DataFrame:
    """Rows from a JSON array of objects, values kept as JSON typed them."""
    try:
        records = json.loads(json_records)
    except ValueError as e:
        raise InvalidArgument(f"{what}: json_records is not JSON: {e}") from None
    if not isinstance(records, list):
        raise InvalidArgument(f"{what}: json_records must be a JSON array of objects (column -> value)")
    return engine_records_frame(records, what)


@dataclass(frozen=True)
class Table:
    """A resolved table reference: a file the worker can read, and its rows."""

    path: Path
    frame: pd.DataFrame
    dataset_id: str | None


class DataStore:
    def __init__(self, root: Path, registry: Registry, data_roots: Iterable[str]) -> None:
        self.dir = root / "datasets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.registry = registry
        self.data_roots = [Path(r).resolve() for r in data_roots]

    def file(self, id: str, fmt: str) -> Path:
        return self.dir / f"{id}.{fmt}"

    # ---- uploads --------------------------------------------------------------------------
    def put(self, chunks: Iterable[bytes], *, sha256: str, fmt: str, display_name: str) -> tuple[str, bool]:
        """Store streamed bytes under their sha256 (checked against ``sha256``)."""
        sha256 = sha256.lower()
        if not SHA256.match(sha256):
            raise InvalidArgument("upload header: sha256 must be 64 lower-case hex digits")
        if fmt not in FORMATS:
            raise InvalidArgument(f"upload header: format {fmt!r} is not one of {FORMATS}")
        known = self.registry.dataset(sha256)
        if known is not None and self.file(sha256, known["format"]).exists():
            for _ in chunks:  # drain the stream; nothing is stored twice
                pass
            return sha256, True
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".upload-", suffix=".tmp")
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
                    fault("upload.mid")
                f.flush()
                os.fsync(f.fileno())
            if h.hexdigest() != sha256:
                raise DataLoss(
                    f"upload damaged or mislabelled: its bytes hash to {h.hexdigest()}, the header says {sha256}; upload it again"
                )
            frame = self._read(Path(tmp), fmt)
            final = self.file(sha256, fmt)
            os.replace(tmp, final)
            fsync_dir(self.dir)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.registry.add_dataset(sha256, display_name, fmt, size, len(frame), [str(c) for c in frame.columns])
        return sha256, False

    def put_bytes(self, data: bytes, fmt: str, display_name: str) -> str:
        id, _ = self.put([data], sha256=hashlib.sha256(data).hexdigest(), fmt=fmt, display_name=display_name)
        return id

    @staticmethod
    def _read(path: Path, fmt: str) -> pd.DataFrame:
        try:
            if fmt == "parquet":
                return pq.read_table(path).to_pandas()
            if fmt == "jsonl":
                return read_jsonl(path, "the uploaded JSON Lines")
            return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
        except Exception as e:  # noqa: BLE001 - any parse failure is the caller's input
            raise InvalidArgument(f"the uploaded bytes are not a readable {fmt} table: {e}") from None

    def delete(self, id: str) -> None:
        row = self.registry.dataset(id)
        if row is None:
            raise NotFound(f"no dataset {id!r}; ListDatasets shows what the daemon holds")
        f = self.file(id, row["format"])
        trash = f.with_name(f".{f.name}.deleted")
        if f.exists():  # renamed away first: a kill after this never resurrects it on restart
            os.replace(f, trash)
        self.registry.delete_dataset(id)
        trash.unlink(missing_ok=True)

    # ---- references -----------------------------------------------------------------------
    def confine(self, path: str) -> Path:
        """``path`` resolved, if it lies under a configured data root (else PERMISSION_DENIED)."""
        p = Path(path)
        if not p.is_absolute():
            raise InvalidArgument(f"path {path!r} must be absolute")
        real = p.resolve()
        if not any(real == root or root in real.parents for root in self.data_roots):
            raise PermissionDenied(
                f"path {path!r} is outside the daemon's data roots {[str(r) for r in self.data_roots]}; "
                "upload the table with DatasetService.UploadDataset or start emberd with --data-roots"
            )
        if not real.exists():
            raise NotFound(f"no such file {path!r} on the daemon's host")
        return real

    def resolve(self, *, dataset_id: str = "", path: str = "", json_records: str = "", parquet: bytes = b"", what: str) -> Table:
        if dataset_id:
            row = self.registry.dataset(dataset_id)
            if row is None:
                raise NotFound(f"{what}: no dataset {dataset_id!r}; upload it first")
            f = self.file(dataset_id, row["format"])
            return Table(f, self._read(f, row["format"]), dataset_id)
        if path:
            real = self.confine(path)
            return Table(real, load_table(real, what=what), None)
        if json_records:
            frame = records_frame(json_records, what)
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            id = self.put_bytes(buf.getvalue(), "parquet", what)
            return Table(self.file(id, "parquet"), frame, id)
        if parquet:
            id = self.put_bytes(parquet, "parquet", what)
            return Table(self.file(id, "parquet"), self._read(self.file(id, "parquet"), "parquet"), id)
        raise InvalidArgument(f"{what} is missing: give a dataset_id, a path, json_records or parquet bytes")

    def frame(self, *, dataset_id: str = "", path: str = "", json_records: str = "", parquet: bytes = b"", what: str) -> pd.DataFrame:
        """Rows for inference: like ``resolve`` but inline rows are not stored."""
        if json_records:
            return records_frame(json_records, what)
        if parquet:
            return self._read_bytes(parquet)
        return self.resolve(dataset_id=dataset_id, path=path, what=what).frame

    @staticmethod
    def _read_bytes(data: bytes) -> pd.DataFrame:
        try:
            return pq.read_table(io.BytesIO(data)).to_pandas()
        except Exception as e:  # noqa: BLE001
            raise InvalidArgument(f"parquet bytes are not a readable table: {e}") from None
