"""Batch predictions: BatchPredict validated on the calling thread (model, version, table,
the columns the model reads, on the table's first rows) and queued as a job whose worker
(``emberd.batch``) predicts every row into ``artifacts/<id>``; and what the daemon does as
such a job succeeds or ends."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import batch
from ..datastore import DataStore
from ..engine.errors import InvalidArgument, NotFound
from ..engine.sources import ReadPolicy, confine
from ..jobspec import BatchSpec, JobSpec
from ..recovery import ARTIFACT_MARKER, record_artifact
from ..registry import Registry
from .artifacts import drop_staging
from .catalog import Catalog
from .domain import JobRecord, TableRef

Submit = Callable[..., JobRecord]  # Training.submit: queue a job of any kind


class BatchPredictions:
    def __init__(self, registry: Registry, catalog: Catalog, data: DataStore, read_policy: ReadPolicy, artifacts_dir: Path, submit: Submit) -> None:
        self.registry, self.catalog, self.data, self.read_policy = registry, catalog, data, read_policy
        self.artifacts_dir, self.submit = artifacts_dir, submit

    def batch_predict(self, name: str, version: int, data: TableRef, with_proba: bool) -> JobRecord:
        """Validate a batch prediction, then queue its job. A refusal writes nothing."""
        v = self.catalog.require_version(name, version)
        path = self._input(data)
        try:
            first = next(batch.read_chunks(path, 64, "data"), None)
        except InvalidArgument:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure is the caller's input
            raise InvalidArgument(f"data: {path.name!r} is not a readable {batch.table_format(path)} table: {e}", field="data") from None
        if first is None or first.empty:
            raise InvalidArgument("data is empty: give at least one row", field="data")
        self.catalog.version_schema(name, v).check_columns(first, with_label=False)
        row = self.catalog.require_model(name)
        spec = JobSpec("BATCH_PREDICT", batch=BatchSpec(
            model_dir=str(self.catalog.model_dir(name)), model_name=name, version=v, data_path=str(path),
            with_proba=with_proba, artifacts_dir=str(self.artifacts_dir), artifact_id=uuid.uuid4().hex,
        ))
        return self.submit(name, spec, row.label, row.problem_type, row.eval_metric)

    def _input(self, data: TableRef) -> Path:
        """The file a batch prediction streams: an uploaded dataset's, or a path confined to
        the data roots (inline rows are for Predict)."""
        if data.dataset_id:
            row = self.registry.dataset(data.dataset_id)
            if row is None:
                raise NotFound(f"data: no dataset {data.dataset_id!r}; upload it first (DatasetService.UploadDataset)")
            return self.data.file(data.dataset_id, row.format)
        if data.path:
            path = confine(data.path, "data", kind="file", policy=self.read_policy)
            batch.table_format(path)
            return path
        if data:
            raise InvalidArgument("data: BatchPredict streams an uploaded dataset (dataset_id) or a file under the data roots "
                                  "(path); send inline rows to Predict", field="data")
        raise InvalidArgument("data is missing: give a dataset_id or a path", field="data")

    # ---- job hooks (BATCH_PREDICT) ------------------------------------------------------------
    def job_succeeded(self, job: JobRecord, result: dict[str, Any]) -> None:
        record_artifact(self.registry, self.artifacts_dir / job.spec.batch_predict.artifact_id)

    def job_published(self, job: JobRecord) -> int | None:
        """The version it predicted with once its artifact is in place (indexed here if the
        worker was killed between publishing and reporting)."""
        art_id = job.spec.batch_predict.artifact_id
        if self.registry.artifact(art_id) is None and (self.artifacts_dir / art_id / ARTIFACT_MARKER).exists():
            record_artifact(self.registry, self.artifacts_dir / art_id)
        art = self.registry.artifact(art_id)
        return art.version if art is not None else None

    def job_ended(self, job: JobRecord, state: str) -> None:
        drop_staging(self.artifacts_dir, job.spec.batch_predict.artifact_id)  # what a killed worker staged
