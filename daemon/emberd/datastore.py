"""Tables the daemon holds: content-addressed files ``datasets/<sha256>.<format>``,
written atomically, verified against the digest the client sent; and the one place that
turns a request's table reference (dataset id, confined path, inline rows) into a file
path and a DataFrame."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from .engine.data import MAX_JSON_DEPTH, load_table, parse_json, read_jsonl
from .engine.data import records_frame as engine_records_frame
from .engine.errors import DataLoss, InvalidArgument, NotFound
from .engine.faults import fault
from .engine.sources import ReadPolicy, confine
from .engine.storage import fsync_dir
from .registry import DatasetRecord, Registry

FORMATS = ("parquet", "csv", "tsv", "jsonl")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def records_frame(json_records: str, what: str, max_depth: int = MAX_JSON_DEPTH) -> pd.DataFrame:
    """Rows from a JSON array of objects, values kept as JSON typed them."""
    records = parse_json(json_records, f"{what}: json_records", max_depth=max_depth)
    if not isinstance(records, list):
        raise InvalidArgument(f"{what}: json_records must be a JSON array of objects (column -> value)")
    return engine_records_frame(records, what)


@dataclass(frozen=True)
class Table:
    """A resolved table reference: a file the worker can read, and its rows. Inline rows
    have no file until ``DataStore.keep`` stores them (after the request was admitted)."""

    path: Path | None
    frame: pd.DataFrame
    dataset_id: str | None
    inline: bytes | None = None  # Parquet bytes of inline rows, not stored yet


class DataStore:
    def __init__(self, root: Path, registry: Registry, policy: ReadPolicy, *, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.dir = root / "datasets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.registry = registry
        self.policy = policy  # paths in requests: under its roots, regular files only
        self.max_json_depth = max_json_depth

    def file(self, id: str, fmt: str) -> Path:
        return self.dir / f"{id}.{fmt}"

    # ---- uploads --------------------------------------------------------------------------
    def put(self, chunks: Iterable[bytes], *, sha256: str, fmt: str, display_name: str, size_bytes: int | None = None) -> tuple[str, bool]:
        """Store streamed bytes under their sha256 (checked against ``sha256``) and their
        size (``size_bytes``, the header's: more bytes than that stop the upload at once)."""
        sha256 = sha256.lower()
        if not SHA256.fullmatch(sha256):
            raise InvalidArgument("upload header: sha256 must be 64 lower-case hex digits")
        if fmt not in FORMATS:
            raise InvalidArgument(f"upload header: format {fmt!r} is not one of {FORMATS}")
        if size_bytes is not None and size_bytes <= 0:
            raise InvalidArgument("upload header: size_bytes must be the upload's size in bytes (> 0)")
        if len(display_name) > 256:
            raise InvalidArgument("upload header: display_name must be at most 256 characters")
        known = self.registry.dataset(sha256)
        if known is not None and self.file(sha256, known.format).exists():
            for _ in chunks:  # drain the stream; nothing is stored twice
                pass
            return sha256, True
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".upload-", suffix=".tmp")
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size_bytes is not None and size > size_bytes:
                        raise InvalidArgument(f"upload: more bytes arrived than the header's size_bytes ({size_bytes}); send the true size")
                    h.update(chunk)
                    f.write(chunk)
                    fault("upload.mid")
                f.flush()
                os.fsync(f.fileno())
            if size_bytes is not None and size != size_bytes:
                raise InvalidArgument(f"upload: {size} bytes arrived but the header's size_bytes says {size_bytes}; upload it again")
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

    def get(self, id: str) -> DatasetRecord:
        row = self.registry.dataset(id)
        if row is None:
            raise NotFound(f"no dataset {id!r}")
        return row

    def datasets(self) -> list[DatasetRecord]:
        return self.registry.datasets()

    def delete(self, id: str) -> None:
        row = self.registry.dataset(id)
        if row is None:
            raise NotFound(f"no dataset {id!r}; ListDatasets shows what the daemon holds")
        f = self.file(id, row.format)
        trash = f.with_name(f".{f.name}.deleted")
        if f.exists():  # renamed away first: a kill after this never resurrects it on restart
            os.replace(f, trash)
        self.registry.delete_dataset(id)
        trash.unlink(missing_ok=True)

    # ---- references -----------------------------------------------------------------------

    def resolve(self, *, dataset_id: str = "", path: str = "", json_records: str = "", parquet: bytes = b"", what: str) -> Table:
        if dataset_id:
            row = self.registry.dataset(dataset_id)
            if row is None:
                raise NotFound(f"{what}: no dataset {dataset_id!r}; upload it first")
            f = self.file(dataset_id, row.format)
            return Table(f, self._read(f, row.format), dataset_id)
        if path:
            real = confine(path, what, kind="file", policy=self.policy)
            return Table(real, load_table(real, what=what), None)
        if json_records:
            frame = records_frame(json_records, what, self.max_json_depth)
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            return Table(None, frame, None, inline=buf.getvalue())
        if parquet:
            return Table(None, self._read_bytes(parquet), None, inline=parquet)
        raise InvalidArgument(f"{what} is missing: give a dataset_id, a path, json_records or parquet bytes")

    def keep(self, table: Table, what: str) -> Table:
        """``table`` with its inline rows stored as a dataset (a file the worker reads);
        called once the request is admitted, so a refused one stores nothing."""
        if table.inline is None:
            return table
        id = self.put_bytes(table.inline, "parquet", what)
        return Table(self.file(id, "parquet"), table.frame, id)

    def frame(self, *, dataset_id: str = "", path: str = "", json_records: str = "", parquet: bytes = b"", what: str) -> pd.DataFrame:
        """Rows for inference: like ``resolve`` but inline rows are not stored."""
        if json_records:
            return records_frame(json_records, what, self.max_json_depth)
        if parquet:
            return self._read_bytes(parquet)
        return self.resolve(dataset_id=dataset_id, path=path, what=what).frame

    @staticmethod
    def _read_bytes(data: bytes) -> pd.DataFrame:
        try:
            return pq.read_table(io.BytesIO(data)).to_pandas()
        except Exception as e:  # noqa: BLE001
            raise InvalidArgument(f"parquet bytes are not a readable table: {e}") from None
