"""Batch prediction: every row of a table of any size predicted in a job's worker process
(``ModelService.BatchPredict``), never on an RPC thread.

The table is read in chunks (Parquet row groups via ``iter_batches``, CSV/TSV via pandas'
``chunksize``, JSON Lines line by line) and the predictions are written chunk by chunk with
a ``pyarrow.parquet.ParquetWriter``, so memory stays that of one chunk whatever the input's
size. The output goes to a staging folder beside ``artifacts/<id>`` with its marker and is
renamed into place whole (``publish_dir``): a cancelled, failed or killed job leaves no
artifact (the daemon removes its staging folder as the job ends, ``recovery.sweep`` after a
kill). Progress (rows done / total, rows/s, ETA) goes out as ``progress`` events.

``predictions.parquet`` has one row per input row, in input order: ``label`` (string) and,
when asked, ``proba_<class>`` (float32, as Predict sends them) for classification;
``value`` (float64) for regression; ``detections`` (JSON text: a list of ``{"bbox":
[x1, y1, x2, y2], "score", "class"}``) for object detection."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .engine.data import parse_json, records_frame
from .engine.errors import InvalidArgument
from .engine.storage import fresh_staging_dir, publish_dir
from .jobspec import BatchSpec
from .recovery import write_artifact_marker

OUTPUT = "predictions.parquet"
CHUNK_ROWS = 4096  # rows read (and written as one row group) at a time, rounded to the model's eval batch
PROGRESS_EVERY_S = 0.5
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def table_format(path: str | Path, what: str = "data") -> str:
    """The format a batch prediction reads ``path`` as, from its suffix (INVALID_ARGUMENT
    for one it cannot stream: COCO ``.json``, unknown suffixes)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InvalidArgument(
            f"{what}: {Path(path).name!r} is not a table a batch prediction can stream; give a Parquet, CSV, TSV or "
            "JSON Lines file (.parquet, .csv, .tsv, .jsonl)",
            field=what,
        )
    return fmt


def read_chunks(path: str | Path, rows: int, what: str = "data") -> Iterator[pd.DataFrame]:
    """The table at ``path`` as frames of at most ``rows`` rows, in order."""
    fmt = table_format(path, what)
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    elif fmt in ("csv", "tsv"):
        with pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", chunksize=rows) as chunks:
            yield from chunks
    else:
        records: list[Any] = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    records.append(parse_json(line, f"{what}: line {n}"))
                if len(records) == rows:
                    yield records_frame(records, what)
                    records = []
        if records:
            yield records_frame(records, what)


def count_rows(path: str | Path) -> int:
    """Rows of the table at ``path``: Parquet's footer, else one streaming pass."""
    if table_format(path) == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return sum(len(c) for c in read_chunks(path, CHUNK_ROWS))


def output_schema(problem_type: str, classes: list[str], with_proba: bool) -> pa.Schema:
    if problem_type == "regression":
        return pa.schema([("value", pa.float64())])
    if problem_type == "object_detection":
        return pa.schema([("detections", pa.string())])
    proba = [(f"proba_{c}", pa.float32()) for c in classes] if with_proba else []
    return pa.schema([("label", pa.string()), *proba], metadata={"classes": json.dumps(classes)})


def predict_rows(p: Any, part: pd.DataFrame, classes: list[str], with_proba: bool) -> dict[str, Any]:
    """One slice's predictions as output columns (the same values Predict answers with)."""
    if p.problem_type == "regression":
        return {"value": np.asarray(p.predict(part, as_pandas=False), dtype=np.float64)}
    if p.problem_type == "object_detection":
        return {"detections": [json.dumps(found) for found in p.predict(part, as_pandas=False)]}
    proba = np.asarray(p.predict_proba(part, as_pandas=False))
    out: dict[str, Any] = {"label": [classes[i] for i in proba.argmax(1)]}
    if with_proba:
        out.update({f"proba_{c}": proba[:, i].astype(np.float32) for i, c in enumerate(classes)})
    return out


def run(spec: BatchSpec, emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The job ``spec``: predict, publish ``artifacts/<artifact_id>``; its summary."""
    from .engine import Predictor

    started = time.monotonic()
    p = Predictor.load(spec.model_dir, version=spec.version)
    model = p._require_model()
    classes = [str(c) for c in (p.class_labels or [])]
    step = max(1, model.cfg.env.eval_batch_size)
    path, with_proba = spec.data_path, spec.with_proba
    total = count_rows(path)
    art_id, artifacts = spec.artifact_id, Path(spec.artifacts_dir)
    staging = fresh_staging_dir(artifacts, art_id)
    schema = output_schema(p.problem_type, classes, with_proba)
    done, reported = 0, 0.0

    def progress() -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else -1.0
        emit({"kind": "progress", "rows_done": done, "rows_total": total, "samples_per_s": round(rate, 2),
              "eta_s": round(eta, 2), "elapsed_s": round(elapsed, 2)})

    try:
        with pq.ParquetWriter(staging / OUTPUT, schema) as writer:
            for frame in read_chunks(path, step * max(1, CHUNK_ROWS // step)):
                if frame.empty:
                    continue
                model.schema.check_columns(frame, with_label=False, what=f"data rows {done}-{done + len(frame) - 1}")
                parts = []
                for start in range(0, len(frame), step):
                    part = frame.iloc[start : start + step]
                    parts.append(pd.DataFrame(predict_rows(p, part, classes, with_proba)))
                    done += len(part)
                    if time.monotonic() - reported >= PROGRESS_EVERY_S:
                        reported = time.monotonic()
                        progress()
                writer.write_table(pa.Table.from_pandas(pd.concat(parts, ignore_index=True), schema=schema, preserve_index=False))
        progress()
        write_artifact_marker(staging, {"id": art_id, "kind": "predictions", "model_name": spec.model_name,
                                        "version": spec.version, "created_at": time.time()})
        publish_dir(staging, artifacts / art_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"version": spec.version, "artifact_id": art_id, "rows": done}
