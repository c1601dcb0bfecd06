"""The gRPC servicers: convert the request, call one of the daemon's services
(``emberd.services``, wired by ``app.Ember``), convert the result. They never read the
registry themselves. The only module besides ``server`` that imports the generated
``ember.v1`` code."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ember.v1 import (
    artifact_service_pb2 as art_pb,
)
from ember.v1 import (
    artifact_service_pb2_grpc as art_grpc,
)
from ember.v1 import (
    dataset_pb2,
    job_pb2,
    model_pb2,
)
from ember.v1 import (
    dataset_service_pb2 as ds_pb,
)
from ember.v1 import (
    dataset_service_pb2_grpc as ds_grpc,
)
from ember.v1 import (
    job_service_pb2 as job_pb,
)
from ember.v1 import (
    job_service_pb2_grpc as job_grpc,
)
from ember.v1 import (
    model_service_pb2 as model_pb,
)
from ember.v1 import (
    model_service_pb2_grpc as model_grpc,
)

from .app import Ember
from .engine.data import JsonTooDeep, parse_json
from .engine.errors import Cancelled, InvalidArgument
from .services.domain import ArtifactRecord, DatasetRecord, FitOptions, JobRecord, ScaleOptions, TableRef

CHUNK = 1 << 20
log = logging.getLogger("emberd")


def _ts(t: float | None) -> Timestamp:
    ts = Timestamp()
    if t:
        ts.FromNanoseconds(int(t * 1e9))
    return ts


def _table(msg: Any) -> TableRef:
    kind = msg.WhichOneof("source")
    return TableRef(**{kind: getattr(msg, kind)}) if kind else TableRef()


def _options(o: Any, max_json_depth: int) -> FitOptions:
    hp = {}
    for k, v in o.hyperparameters.items():
        try:
            hp[k] = parse_json(v, f"options.hyperparameters[{k!r}]", max_depth=max_json_depth)
        except JsonTooDeep:
            raise
        except InvalidArgument:
            hp[k] = v  # a bare string is taken as a string
    return FitOptions(
        label=o.label,
        problem_type=o.problem_type,
        eval_metric=o.eval_metric,
        time_limit_s=o.time_limit_s,
        hyperparameters=hp,
        seed=o.seed,
        column_types=dict(o.column_types),
        scale=_scale(o.scale),
    )


def _scale(s: Any) -> ScaleOptions:
    return ScaleOptions(devices=s.devices, num_nodes=s.num_nodes, strategy=s.strategy)


EVENT_KINDS = {
    "state": job_pb2.JOB_EVENT_KIND_STATE,
    "progress": job_pb2.JOB_EVENT_KIND_PROGRESS,
    "validation": job_pb2.JOB_EVENT_KIND_VALIDATION,
    "checkpoint": job_pb2.JOB_EVENT_KIND_CHECKPOINT,
}


def job_event(job_id: str, seq: int, t: float, e: dict[str, Any]) -> job_pb2.JobEvent:
    state = e.get("state") if e.get("kind") == "state" else None
    message = e.get("message") or e.get("path") or ""
    if e.get("kind") == "state" and state and state.lower() == state:  # the engine's own state notes
        message = message or json.dumps({k: v for k, v in e.items() if k not in ("kind",)})
        state = None
    return job_pb2.JobEvent(
        job_id=job_id,
        seq=seq,
        time=_ts(t),
        kind=EVENT_KINDS.get(e.get("kind", ""), job_pb2.JOB_EVENT_KIND_UNSPECIFIED),
        state=job_pb2.JobState.Value(f"JOB_STATE_{state}") if state else job_pb2.JOB_STATE_UNSPECIFIED,
        epoch=int(e.get("epoch") or 0),
        step=int(e.get("step") or 0),
        loss=float(e.get("loss") or 0.0),
        samples_per_s=float(e.get("samples_per_s") or 0.0),
        val_score=float(e.get("score", e.get("best", e.get("val_score"))) or 0.0),
        eta_s=float(e["eta_s"]) if e.get("eta_s") is not None else -1.0,
        elapsed_s=float(e.get("elapsed_s") or 0.0),
        message=message,
        rows_done=int(e.get("rows_done") or 0),
        rows_total=int(e.get("rows_total") or 0),
    )


class IdleWatchdog:
    """Cancels a client stream that sends nothing for ``timeout_s`` (an idle upload must not
    hold its RPC thread forever); ``fed(x)`` marks each message that arrives."""

    def __init__(self, context: Any, timeout_s: float) -> None:
        self.context, self.timeout_s = context, timeout_s
        self._last = time.monotonic()
        self._done = threading.Event()
        self.fired = False

    def fed(self, item: Any) -> Any:
        self._last = time.monotonic()
        return item

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout_s)):
            if time.monotonic() - self._last > self.timeout_s:
                self.fired = True
                log.info("upload idle for %.0f s: cancelling it", self.timeout_s)
                self.context.cancel()
                return

    def __enter__(self) -> "IdleWatchdog":
        threading.Thread(target=self._watch, name="ember-upload-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()


class Servicers:
    def __init__(self, app: Ember) -> None:
        self.app = app

    # ---- conversions -------------------------------------------------------------------------
    def job(self, j: JobRecord | None) -> job_pb2.Job:
        assert j is not None
        ev = self.app.job_views.last_event(j.id)
        last = job_event(j.id, *ev) if ev else None
        return job_pb2.Job(
            id=j.id,
            model_name=j.model_name,
            kind=job_pb2.JobKind.Value(f"JOB_KIND_{j.kind}"),
            state=job_pb2.JobState.Value(f"JOB_STATE_{j.state}"),
            create_time=_ts(j.created_at),
            update_time=_ts(j.updated_at),
            version=j.version or 0,
            error=j.error or "",
            last_event=last,
            resumes_job_id=j.resumes_job_id or "",
            artifact_id=j.spec.batch.artifact_id if j.spec.batch is not None and j.state == "SUCCEEDED" else "",
            daemon_id=j.owner or "",
        )

    def model(self, name: str) -> model_pb2.Model:
        m = self.app.catalog.model_info(name)
        return model_pb2.Model(
            name=m["model"].name,
            label=m["model"].label,
            problem_type=m["model"].problem_type,
            eval_metric=m["model"].eval_metric,
            current_version=m["current_version"],
            training=m["training"],
            classes=m["classes"],
            state=model_pb2.ModelState.Value(f"MODEL_STATE_{m['state']}"),
            aliases=m["aliases"],
            versions=[
                model_pb2.ModelVersion(
                    version=v.version,
                    parent_version=v.parent_version or 0,
                    val_score=v.val_score or 0.0,
                    train_digest=v.train_digest or "",
                    job_id=v.job_id or "",
                    create_time=_ts(v.created_at),
                    forgetting_before=v.forgetting_before or 0.0,
                    forgetting_after=v.forgetting_after or 0.0,
                )
                for v in m["versions"]
            ],
        )

    @staticmethod
    def artifact(a: ArtifactRecord) -> model_pb.Artifact:
        return model_pb.Artifact(
            id=a.id, kind=a.kind, model_name=a.model_name, version=a.version, files=list(a.files), path=a.path, size_bytes=a.size_bytes,
        )

    @staticmethod
    def dataset(d: DatasetRecord) -> dataset_pb2.Dataset:
        return dataset_pb2.Dataset(
            id=d.id, display_name=d.display_name or "", format=d.format, size_bytes=d.size_bytes,
            num_rows=d.num_rows, columns=list(d.columns), create_time=_ts(d.created_at),
        )

    def version(self, request: Any) -> int:
        """The request's version: its ``alias`` resolved when it names one (else ``version``)."""
        if request.alias:
            return self.app.catalog.require_version(request.model_name, request.version, request.alias)
        return request.version

    def frame(self, data: Any, what: str = "data") -> Any:
        return self.app.data.frame(**vars(_table(data)), what=what)


class ModelServicer(model_grpc.ModelServiceServicer):
    def __init__(self, s: Servicers) -> None:
        self.s, self.app = s, s.app

    def Fit(self, request, context):  # noqa: N802 - gRPC method names
        options = _options(request.options, self.app.settings.max_json_depth)
        job = self.app.training.fit(request.model_name, _table(request.train_data), _table(request.tuning_data), options)
        return model_pb.FitResponse(job=self.s.job(job))

    def Resume(self, request, context):  # noqa: N802
        job = self.app.training.resume(request.model_name, _table(request.train_data), _table(request.tuning_data), _scale(request.scale))
        return model_pb.ResumeResponse(job=self.s.job(job))

    def Transfer(self, request, context):  # noqa: N802
        options = _options(request.options, self.app.settings.max_json_depth)
        job = self.app.training.transfer(
            request.model_name, _table(request.train_data), _table(request.tuning_data), options, request.dump_artifact_id
        )
        return model_pb.TransferResponse(job=self.s.job(job))

    def Dump(self, request, context):  # noqa: N802
        return model_pb.DumpResponse(artifact=self.s.artifact(self.app.artifacts.dump(request.model_name, self.s.version(request))))

    def Export(self, request, context):  # noqa: N802
        art = self.app.artifacts.export(
            request.model_name, self.s.version(request), _table(request.parity_data), request.include_backbones, request.opset_version
        )
        return model_pb.ExportResponse(artifact=self.s.artifact(art))

    def Predict(self, request, context):  # noqa: N802
        frame = self.s.frame(request.data)
        r = self.app.serving.predict(request.model_name, self.s.version(request), frame, request.with_probabilities, alive=context.is_active)
        out = model_pb.PredictResponse(version=r["version"])
        if "detections" in r:
            out.detections.extend(
                model_pb.ImageDetections(
                    boxes=[
                        model_pb.DetectedBox(x1=d["bbox"][0], y1=d["bbox"][1], x2=d["bbox"][2], y2=d["bbox"][3], score=d["score"], label=d["class"])
                        for d in found
                    ]
                )
                for found in r["detections"]
            )
            return out
        if "values" in r:
            out.values.extend(r["values"])
            return out
        out.labels.extend(r["labels"])
        out.classes.extend(r["classes"])
        if r["proba"] is not None:
            out.probabilities.extend(r["proba"].astype("float32").ravel().tolist())
        return out

    def BatchPredict(self, request, context):  # noqa: N802
        job = self.app.batch.batch_predict(request.model_name, self.s.version(request), _table(request.data), request.with_probabilities)
        return model_pb.BatchPredictResponse(job=self.s.job(job))

    def Evaluate(self, request, context):  # noqa: N802
        frame = self.s.frame(request.data)
        scores, v = self.app.serving.evaluate(request.model_name, self.s.version(request), frame, list(request.metrics), alive=context.is_active)
        return model_pb.EvaluateResponse(scores=scores, version=v)

    def Embed(self, request, context):  # noqa: N802
        emb = self.app.serving.embed(request.model_name, self.s.version(request), self.s.frame(request.data), alive=context.is_active)
        return model_pb.EmbedResponse(dim=emb.shape[1], values=emb.ravel().tolist())

    def GetModel(self, request, context):  # noqa: N802
        return model_pb.GetModelResponse(model=self.s.model(request.name))

    def ListModels(self, request, context):  # noqa: N802
        return model_pb.ListModelsResponse(models=[self.s.model(m.name) for m in self.app.catalog.models()])

    def DeleteModel(self, request, context):  # noqa: N802
        self.app.catalog.delete_model(request.name)
        return model_pb.DeleteModelResponse()

    def DeleteVersion(self, request, context):  # noqa: N802
        self.app.catalog.delete_version(request.model_name, request.version)
        return model_pb.DeleteVersionResponse()

    def SetAlias(self, request, context):  # noqa: N802
        self.app.catalog.set_alias(request.model_name, request.alias, request.version)
        return model_pb.SetAliasResponse(model=self.s.model(request.model_name))

    def DeleteAlias(self, request, context):  # noqa: N802
        self.app.catalog.delete_alias(request.model_name, request.alias)
        return model_pb.DeleteAliasResponse(model=self.s.model(request.model_name))

    def GetServerStats(self, request, context):  # noqa: N802
        st = self.app.serving.stats()
        return model_pb.GetServerStatsResponse(
            cache_hits=st["hits"], cache_misses=st["misses"], cache_evictions=st["evictions"],
            cache_bytes=st["bytes"], cache_budget_bytes=st["budget"], cached=st["cached"],
            daemon_id=self.app.daemon_id, daemons=[model_pb.DaemonInfo(**d) for d in self.app.job_views.daemons()],
        )


class JobServicer(job_grpc.JobServiceServicer):
    def __init__(self, s: Servicers) -> None:
        self.s, self.app = s, s.app

    def GetJob(self, request, context):  # noqa: N802
        return job_pb.GetJobResponse(job=self.s.job(self.app.job_views.get(request.id)))

    def ListJobs(self, request, context):  # noqa: N802
        jobs = self.app.job_views.list(request.model_name or None, request.page_size or 100)
        return job_pb.ListJobsResponse(jobs=[self.s.job(j) for j in jobs])

    def WatchJob(self, request, context):  # noqa: N802
        for seq, t, e, job in self.app.job_views.watch(request.id, request.after_seq, alive=context.is_active):
            yield job_pb.WatchJobResponse(event=job_event(request.id, seq, t, e), job=self.s.job(job))

    def CancelJob(self, request, context):  # noqa: N802
        return job_pb.CancelJobResponse(job=self.s.job(self.app.job_views.cancel(request.id)))


class DatasetServicer(ds_grpc.DatasetServiceServicer):
    def __init__(self, s: Servicers) -> None:
        self.s, self.app = s, s.app

    def UploadDataset(self, request_iterator, context):  # noqa: N802
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with a header message (display_name, format, sha256, size_bytes)")
        h = first.header
        timeout = self.app.settings.upload_idle_timeout_s
        with IdleWatchdog(context, timeout) as watchdog:
            chunks = (watchdog.fed(m.chunk) for m in request_iterator if m.WhichOneof("part") == "chunk")
            try:
                id, dedup = self.app.data.put(chunks, sha256=h.sha256, fmt=h.format, display_name=h.display_name, size_bytes=h.size_bytes)
            except grpc.RpcError:  # the stream broke off (nothing was stored)
                why = f"it sent nothing for {timeout:g} s (--upload-idle-timeout-s)" if watchdog.fired else "the client cancelled it"
                raise Cancelled(f"upload {h.display_name!r} stopped: {why}") from None
        return ds_pb.UploadDatasetResponse(dataset=self.s.dataset(self.app.data.get(id)), deduplicated=dedup)

    def GetDataset(self, request, context):  # noqa: N802
        return ds_pb.GetDatasetResponse(dataset=self.s.dataset(self.app.data.get(request.id)))

    def ListDatasets(self, request, context):  # noqa: N802
        return ds_pb.ListDatasetsResponse(datasets=[self.s.dataset(d) for d in self.app.data.datasets()])

    def DeleteDataset(self, request, context):  # noqa: N802
        self.app.data.delete(request.id)
        return ds_pb.DeleteDatasetResponse()


class ArtifactServicer(art_grpc.ArtifactServiceServicer):
    def __init__(self, s: Servicers) -> None:
        self.s, self.app = s, s.app

    def DownloadArtifact(self, request, context) -> Iterator[art_pb.DownloadArtifactResponse]:  # noqa: N802
        art = self.app.artifacts.get(request.id)
        root = art.path
        for rel in art.files:
            h = hashlib.sha256()
            size = os.path.getsize(os.path.join(root, rel))
            with open(os.path.join(root, rel), "rb") as f:
                offset = 0
                while True:
                    data = f.read(CHUNK)
                    h.update(data)
                    last = offset + len(data) >= size
                    yield art_pb.DownloadArtifactResponse(
                        path=rel, offset=offset, data=data, last=last, sha256=h.hexdigest() if last else ""
                    )
                    offset += len(data)
                    if last:
                        break
