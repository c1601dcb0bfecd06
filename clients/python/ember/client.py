"""``Client``: one connection to an Ember daemon, with the RPCs as methods taking Python
values. With no address given (nor ``EMBER_ADDRESS``) and no daemon listening on the
default port, it starts a local ``emberd`` in the background and reuses it afterwards.

Every call has a deadline (``DEFAULT_TIMEOUTS`` per method, overridable with
``Client(timeouts=...)``); calls that are safe to repeat are retried with backoff on
UNAVAILABLE by gRPC itself (the channel's service config, ``RETRIED_METHODS``); the channel
sends keepalive pings so a dead connection is noticed. A refusal raises ``EmberRpcError``
with the daemon's ``google.rpc`` details: ``reason``, ``field_violations``,
``precondition_violations``, ``resource``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd

from .v1 import (
    artifact_service_pb2 as art_pb,
)
from .v1 import (
    artifact_service_pb2_grpc as art_grpc,
)
from .v1 import (
    dataset_service_pb2 as ds_pb,
)
from .v1 import (
    dataset_service_pb2_grpc as ds_grpc,
)
from .v1 import (
    job_pb2,
    table_pb2,
)
from .v1 import (
    job_service_pb2 as job_pb,
)
from .v1 import (
    job_service_pb2_grpc as job_grpc,
)
from .v1 import (
    model_service_pb2 as model_pb,
)
from .v1 import (
    model_service_pb2_grpc as model_grpc,
)

DEFAULT_PORT = 50151
CHUNK = 1 << 20
FINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED, job_pb2.JOB_STATE_INTERRUPTED}


# Seconds a call may take before it fails DEADLINE_EXCEEDED; None: no deadline (a stream
# that lasts as long as its job). Methods not named here get DEFAULT_TIMEOUT.
DEFAULT_TIMEOUT = 60.0
DEFAULT_TIMEOUTS: dict[str, float | None] = {
    "GetModel": 15.0, "ListModels": 15.0, "GetServerStats": 15.0, "DeleteModel": 60.0,
    "DeleteVersion": 60.0, "SetAlias": 15.0, "DeleteAlias": 15.0,
    "GetJob": 15.0, "ListJobs": 15.0, "CancelJob": 60.0, "WatchJob": None,
    "GetDataset": 15.0, "ListDatasets": 15.0, "DeleteDataset": 60.0, "UploadDataset": 1800.0,
    "Fit": 600.0, "Resume": 600.0, "Transfer": 600.0,  # validation reads the whole table
    "Predict": 300.0, "Evaluate": 600.0, "Embed": 300.0, "BatchPredict": 600.0,
    "Dump": 1800.0, "Export": 3600.0, "DownloadArtifact": 3600.0,
}
# Calls whose repetition changes nothing: gRPC retries them on UNAVAILABLE (the daemon
# restarting, a dropped connection), with exponential backoff.
RETRIED_METHODS = {
    "ember.v1.ModelService": ["GetModel", "ListModels", "GetServerStats", "Predict", "Evaluate", "Embed", "SetAlias"],
    "ember.v1.JobService": ["GetJob", "ListJobs", "WatchJob", "CancelJob"],
    "ember.v1.DatasetService": ["GetDataset", "ListDatasets"],
    "ember.v1.ArtifactService": ["DownloadArtifact"],
}
RETRY_POLICY = {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "5s", "backoffMultiplier": 2.5, "retryableStatusCodes": ["UNAVAILABLE"]}


def service_config() -> str:
    return json.dumps({
        "methodConfig": [
            {"name": [{"service": svc, "method": m} for svc, ms in RETRIED_METHODS.items() for m in ms], "retryPolicy": RETRY_POLICY}
        ]
    })


class EmberRpcError(Exception):
    """A call the daemon refused or that failed; ``code`` is the gRPC status. From the
    daemon's ``google.rpc.Status`` details, where it sent them: ``reason`` (a stable
    UPPER_SNAKE string, ``ErrorInfo``), ``field_violations`` (``[(field, description)]``,
    ``BadRequest``), ``precondition_violations`` (``[(type, subject, description)]``),
    ``resource`` (``(resource_type, resource_name)``, ``ResourceInfo``), ``request_id``."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[Any] | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = list(details or [])  # the unpacked google.rpc messages
        self.reason: str | None = None
        self.domain: str | None = None
        self.metadata: dict[str, str] = {}
        self.field_violations: list[tuple[str, str]] = []
        self.precondition_violations: list[tuple[str, str, str]] = []
        self.resource: tuple[str, str] | None = None
        for d in self.details:
            kind = type(d).__name__
            if kind == "ErrorInfo":
                self.reason, self.domain, self.metadata = d.reason, d.domain, dict(d.metadata)
            elif kind == "BadRequest":
                self.field_violations += [(v.field, v.description) for v in d.field_violations]
            elif kind == "PreconditionFailure":
                self.precondition_violations += [(v.type, v.subject, v.description) for v in d.violations]
            elif kind == "ResourceInfo":
                self.resource = (d.resource_type, d.resource_name)

    @property
    def request_id(self) -> str | None:
        return self.metadata.get("request_id")

    @classmethod
    def from_grpc(cls, e: grpc.RpcError) -> "EmberRpcError":
        return cls(e.code(), e.details() or "", _rich_details(e))


class DaemonLost(EmberRpcError):
    """The daemon stopped answering while a job ran (killed, crashed, its host down)."""

    def __init__(self, address: str, job: Any, waited_s: float, cause: str) -> None:
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            f"the daemon at {address} stopped answering while job {job.id} ({job.model_name}) ran, and did not come back "
            f"within {waited_s:.0f} s ({cause}). Restart emberd (its jobs that were running become INTERRUPTED), then "
            f"continue the fit from its last checkpoint: Client.resume({job.model_name!r}), or "
            f"MultiModalPredictor.load(path, resume=True).fit(...)",
        )
        self.job_id = job.id


def _rich_details(e: grpc.RpcError) -> list[Any]:
    """The google.rpc detail messages in the call's ``grpc-status-details-bin`` trailer."""
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(e)  # type: ignore[arg-type]
    except (ImportError, ValueError, AttributeError):
        return []
    out = []
    for any_ in status.details if status is not None else []:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure,
                     error_details_pb2.ResourceInfo, error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure):
            if any_.Is(kind.DESCRIPTOR):
                msg = kind()
                any_.Unpack(msg)
                out.append(msg)
    return out


def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except grpc.RpcError as e:
        raise EmberRpcError.from_grpc(e) from None


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A local Parquet, CSV, TSV or JSON Lines file as a frame."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".ndjson"):
        return pd.DataFrame.from_records([json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()])
    return pd.read_csv(path, sep="\t" if suffix in (".tsv", ".tab") else ",")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def inline_local_images(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with each image path that names a file on this machine replaced by the
    file's bytes. The daemon reads paths only under its ``--data-roots`` (it may be on
    another host, or serve other users); the client reads what its own user may read, so
    AutoMM's frames of image paths work against any daemon. Other cells stay as they are."""
    out = None
    for col in df.columns:
        if df[col].dtype != object:
            continue
        values = df[col].dropna()
        if len(values) == 0 or not all(isinstance(v, str) and v.lower().endswith(IMAGE_SUFFIXES) for v in values.head(20)):
            continue
        def read(v: Any) -> Any:
            if isinstance(v, str) and v.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(v):
                return Path(v).read_bytes()
            return v
        out = df.copy() if out is None else out
        out[col] = df[col].map(read)
    return df if out is None else out


def table_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _healthy(address: str, timeout: float = 0.5) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            return r.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False


def ensure_local_daemon(port: int = DEFAULT_PORT, root: str | None = None, wait_s: float = 60.0) -> str:
    """The address of a local daemon on ``port``, started in the background if none answers."""
    address = f"127.0.0.1:{port}"
    if _healthy(address):
        return address
    root = root or os.environ.get("EMBER_ROOT") or str(Path.home() / ".ember")
    Path(root).mkdir(parents=True, exist_ok=True)
    log = open(Path(root) / "emberd.log", "ab")
    subprocess.Popen(
        [sys.executable, "-m", "emberd", "--port", str(port), "--root", root],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _healthy(address):
            return address
        time.sleep(0.2)
    raise EmberRpcError(grpc.StatusCode.UNAVAILABLE, f"started emberd on {address} but it did not become healthy; see {root}/emberd.log")


class Client:
    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        root_certificates: bytes | None = None,
        timeouts: dict[str, float | None] | None = None,
        reconnect_s: float | None = None,
    ) -> None:
        """``timeouts``: seconds per method name (``{"Predict": 5}``), over ``DEFAULT_TIMEOUTS``;
        ``reconnect_s``: how long ``wait`` waits for a daemon that stopped answering before
        it gives up (saying to restart the daemon and Resume); default ``EMBER_RECONNECT_S``
        or 60."""
        address = address or os.environ.get("EMBER_ADDRESS") or ensure_local_daemon()
        token = token or os.environ.get("EMBER_TOKEN")
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self.reconnect_s = float(os.environ.get("EMBER_RECONNECT_S", 60.0)) if reconnect_s is None else reconnect_s
        opts = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config()),
            ("grpc.keepalive_time_ms", 30_000),  # ping an idle connection, so a dead daemon is noticed
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", 200),  # a local daemon restarts in seconds
            ("grpc.max_reconnect_backoff_ms", 5_000),
            # its own connections: a new Client reaches a restarted daemon at once, instead of
            # sharing another channel's connection that is still backing off from the old one
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates)
            if token:
                creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
            self.channel = grpc.secure_channel(address, creds, options=opts)
            self._md: tuple = ()
        else:
            self.channel = grpc.insecure_channel(address, options=opts)
            self._md = (("authorization", f"Bearer {token}"),) if token else ()
        self.address = address
        self.models = model_grpc.ModelServiceStub(self.channel)
        self.jobs = job_grpc.JobServiceStub(self.channel)
        self.datasets = ds_grpc.DatasetServiceStub(self.channel)
        self.artifacts = art_grpc.ArtifactServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def timeout(self, method: str) -> float | None:
        return self.timeouts.get(method, DEFAULT_TIMEOUT)

    def _rpc(self, fn: Any, request: Any) -> Any:
        """Call one unary method with its deadline and the credentials; EmberRpcError on failure."""
        method = getattr(fn, "_method", b"")
        name = (method.decode() if isinstance(method, bytes) else str(method)).rsplit("/", 1)[-1]
        return _call(fn, request, metadata=self._md, timeout=self.timeout(name))

    # ---- datasets -------------------------------------------------------------------------
    def upload(self, df: pd.DataFrame, name: str = "table") -> str:
        """Upload a frame (as Parquet) unless the daemon already holds these bytes; its id."""
        data = table_bytes(inline_local_images(df))
        sha = hashlib.sha256(data).hexdigest()
        try:
            self._rpc(self.datasets.GetDataset, ds_pb.GetDatasetRequest(id=sha))
            return sha
        except EmberRpcError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:
                raise

        def parts() -> Iterator[ds_pb.UploadDatasetRequest]:
            yield ds_pb.UploadDatasetRequest(header=ds_pb.UploadHeader(display_name=name, format="parquet", sha256=sha, size_bytes=len(data)))
            for i in range(0, len(data), CHUNK):
                yield ds_pb.UploadDatasetRequest(chunk=data[i : i + CHUNK])

        return self._rpc(self.datasets.UploadDataset, parts()).dataset.id

    def table(self, data: pd.DataFrame | str | None, name: str = "table") -> table_pb2.TableData | None:
        if data is None:
            return None
        if isinstance(data, str):
            if os.path.exists(data):  # a local file: read here and upload
                return table_pb2.TableData(dataset_id=self.upload(read_table(data), name))
            return table_pb2.TableData(dataset_id=data)
        return table_pb2.TableData(dataset_id=self.upload(data, name))

    @staticmethod
    def rows(df: pd.DataFrame) -> table_pb2.TableData:
        """Small frames go inline (no upload round trip): as JSON, or as Parquet when cells
        hold bytes (images) or lists (detection boxes), which JSON cannot carry."""
        df = inline_local_images(df)
        if any(df[c].map(lambda v: isinstance(v, (bytes, bytearray, list, np.ndarray))).any() for c in df.columns if df[c].dtype == object):
            return table_pb2.TableData(parquet=table_bytes(df))
        return table_pb2.TableData(json_records=df.to_json(orient="records"))

    # ---- models -----------------------------------------------------------------------------
    @staticmethod
    def options(label: str = "", problem_type: str | None = None, eval_metric: str | None = None, time_limit: float | None = None,
                hyperparameters: dict[str, Any] | None = None, seed: int = 0, column_types: dict[str, str] | None = None,
                devices: int = 0, num_nodes: int = 0, strategy: str = "") -> model_pb.FitOptions:
        """``devices``/``num_nodes``/``strategy``: train on that many processes (Lightning
        DDP); 0 or empty leaves them to the hyperparameters (``env.devices`` ...)."""
        return model_pb.FitOptions(
            label=label, problem_type=problem_type or "", eval_metric=eval_metric or "", time_limit_s=float(time_limit or 0),
            hyperparameters={k: json.dumps(v) for k, v in (hyperparameters or {}).items()}, seed=seed,
            column_types=column_types or {}, scale=Client.scale(devices, num_nodes, strategy),
        )

    @staticmethod
    def scale(devices: int = 0, num_nodes: int = 0, strategy: str = "") -> model_pb.ScaleOptions:
        return model_pb.ScaleOptions(devices=devices or 0, num_nodes=num_nodes or 0, strategy=strategy or "")

    def fit(self, model: str, train: pd.DataFrame | str, tuning: pd.DataFrame | str | None = None, **options: Any) -> job_pb2.Job:
        req = model_pb.FitRequest(model_name=model, train_data=self.table(train, "train"), options=self.options(**options))
        if tuning is not None:
            req.tuning_data.CopyFrom(self.table(tuning, "tuning"))
        return self._rpc(self.models.Fit, req).job

    def transfer(self, model: str, dump_artifact_id: str, train: pd.DataFrame | str, tuning: pd.DataFrame | str | None = None, **options: Any) -> job_pb2.Job:
        req = model_pb.TransferRequest(
            model_name=model, train_data=self.table(train, "train"), options=self.options(**options), dump_artifact_id=dump_artifact_id
        )
        if tuning is not None:
            req.tuning_data.CopyFrom(self.table(tuning, "tuning"))
        return self._rpc(self.models.Transfer, req).job

    def resume(self, model: str, train: pd.DataFrame | str | None = None, *, devices: int = 0, num_nodes: int = 0, strategy: str = "") -> job_pb2.Job:
        """Continue the interrupted fit; ``devices`` etc. change its number of processes (0: as before)."""
        req = model_pb.ResumeRequest(model_name=model, scale=self.scale(devices, num_nodes, strategy))
        if train is not None:
            req.train_data.CopyFrom(self.table(train, "train"))
        return self._rpc(self.models.Resume, req).job

    # ``version`` (0: current) or ``alias`` (SetAlias; "latest": current) picks the version.
    def predict(self, model: str, df: pd.DataFrame, *, version: int = 0, alias: str = "", probabilities: bool = False) -> model_pb.PredictResponse:
        data = self.rows(df) if len(df) <= 1000 else self.table(df, "predict")
        req = model_pb.PredictRequest(model_name=model, version=version, alias=alias, data=data, with_probabilities=probabilities)
        return self._rpc(self.models.Predict, req)

    def evaluate(self, model: str, df: pd.DataFrame, metrics: list[str] | None = None, *, version: int = 0, alias: str = "") -> dict[str, float]:
        data = self.rows(df) if len(df) <= 1000 else self.table(df, "evaluate")
        req = model_pb.EvaluateRequest(model_name=model, version=version, alias=alias, data=data, metrics=metrics or [])
        return dict(self._rpc(self.models.Evaluate, req).scores)

    def embed(self, model: str, df: pd.DataFrame, *, version: int = 0, alias: str = "") -> Any:
        import numpy as np

        data = self.rows(df) if len(df) <= 1000 else self.table(df, "embed")
        r = self._rpc(self.models.Embed, model_pb.EmbedRequest(model_name=model, version=version, alias=alias, data=data))
        return np.asarray(r.values, dtype=np.float32).reshape(-1, r.dim)

    def batch_predict(
        self, model: str, data: pd.DataFrame | str | None = None, *, server_path: str = "", version: int = 0, alias: str = "",
        probabilities: bool = False,
    ) -> job_pb2.Job:
        """Predict every row of a table of any size in a job (no row cap); returns the Job.
        ``data``: a frame or a local file (uploaded), or a dataset id; or ``server_path``: a
        file under the daemon's ``--data-roots``. ``batch_result(job)`` waits and fetches it."""
        if (data is None) == (not server_path):
            raise ValueError("give data (a frame, a local file or a dataset id) or server_path, not both")
        table = table_pb2.TableData(path=server_path) if server_path else self.table(data, "batch_predict")
        req = model_pb.BatchPredictRequest(model_name=model, version=version, alias=alias, data=table, with_probabilities=probabilities)
        return self._rpc(self.models.BatchPredict, req).job

    def batch_result(self, job: job_pb2.Job, dest: str | os.PathLike | None = None, *, progress: bool = True) -> pd.DataFrame:
        """Wait for a batch prediction (a progress bar over its rows), download its
        ``predictions.parquet`` into the folder ``dest`` (default: a temporary one, removed)
        and return it as a frame, one row per input row in input order. A job that did not
        succeed raises EmberRpcError with its error."""
        import tempfile

        job = self.wait(job, progress=progress, description="batch-predict")
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            state = job_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
            raise EmberRpcError(grpc.StatusCode.ABORTED, f"batch prediction {job.id} of {job.model_name} ended {state}: {job.error}")
        if dest is not None:
            return pd.read_parquet(self._download_predictions(job, dest))
        with tempfile.TemporaryDirectory(prefix="ember-predictions-") as tmp:
            return pd.read_parquet(self._download_predictions(job, tmp))

    def _download_predictions(self, job: job_pb2.Job, dest: str | os.PathLike) -> Path:
        return next(p for p in self.download(job.artifact_id, dest) if p.name == "predictions.parquet")

    def dump(self, model: str, version: int = 0, *, alias: str = "") -> model_pb.Artifact:
        return self._rpc(self.models.Dump, model_pb.DumpRequest(model_name=model, version=version, alias=alias)).artifact

    def export(
        self, model: str, version: int = 0, *, alias: str = "", parity_data: pd.DataFrame | None = None, backbones: bool = False,
        opset_version: int = 0,
    ) -> model_pb.Artifact:
        """ONNX bundle of a version (see ``ember.onnx``); ``parity_data``: real rows for the
        parity check (default: the version's held-out validation rows); ``opset_version``: 0
        for the daemon's default (18)."""
        req = model_pb.ExportRequest(
            model_name=model, version=version, alias=alias, include_backbones=backbones, opset_version=opset_version
        )
        if parity_data is not None:
            req.parity_data.CopyFrom(self.rows(parity_data) if len(parity_data) <= 1000 else self.table(parity_data, "export"))
        return self._rpc(self.models.Export, req).artifact

    def get_model(self, name: str) -> Any:
        return self._rpc(self.models.GetModel, model_pb.GetModelRequest(name=name)).model

    def list_models(self) -> list[Any]:
        return list(self._rpc(self.models.ListModels, model_pb.ListModelsRequest()).models)

    def delete_model(self, name: str) -> None:
        self._rpc(self.models.DeleteModel, model_pb.DeleteModelRequest(name=name))

    def delete_version(self, model: str, version: int) -> None:
        """Refused (FAILED_PRECONDITION) for the current version and for one an alias names."""
        self._rpc(self.models.DeleteVersion, model_pb.DeleteVersionRequest(model_name=model, version=version))

    def set_alias(self, model: str, alias: str, version: int) -> Any:
        """Point ``alias`` at ``version`` (a rollback is moving it back); returns the model."""
        req = model_pb.SetAliasRequest(model_name=model, alias=alias, version=version)
        return self._rpc(self.models.SetAlias, req).model

    def delete_alias(self, model: str, alias: str) -> Any:
        req = model_pb.DeleteAliasRequest(model_name=model, alias=alias)
        return self._rpc(self.models.DeleteAlias, req).model

    def stats(self) -> Any:
        return self._rpc(self.models.GetServerStats, model_pb.GetServerStatsRequest())

    # ---- jobs -------------------------------------------------------------------------------
    def get_job(self, id: str) -> job_pb2.Job:
        return self._rpc(self.jobs.GetJob, job_pb.GetJobRequest(id=id)).job

    def list_jobs(self, model: str = "") -> list[job_pb2.Job]:
        return list(self._rpc(self.jobs.ListJobs, job_pb.ListJobsRequest(model_name=model)).jobs)

    def cancel(self, id: str) -> job_pb2.Job:
        return self._rpc(self.jobs.CancelJob, job_pb.CancelJobRequest(id=id)).job

    def watch(self, id: str, after_seq: int = 0) -> Iterator[job_pb.WatchJobResponse]:
        try:
            yield from self.jobs.WatchJob(job_pb.WatchJobRequest(id=id, after_seq=after_seq), metadata=self._md, timeout=self.timeout("WatchJob"))
        except grpc.RpcError as e:
            raise EmberRpcError.from_grpc(e) from None

    def wait(self, job: job_pb2.Job, *, progress: bool = True, description: str = "fit") -> job_pb2.Job:
        """Follow a job to its end (a progress bar over its time budget, or a batch
        prediction's rows), and return it."""
        from tqdm.auto import tqdm

        bar = tqdm(total=100, desc=f"{description} {job.model_name}", unit="%", disable=not progress, leave=True,
                   bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}{postfix}]")
        last = job
        seq = 0
        lost_since: float | None = None  # when the daemon stopped answering
        while True:
            try:
                for r in self.watch(job.id, after_seq=seq):
                    lost_since = None
                    seq, e, last = r.event.seq, r.event, r.job
                    if e.kind == job_pb2.JOB_EVENT_KIND_PROGRESS and e.rows_total:  # a batch prediction
                        bar.n = 100.0 * e.rows_done / e.rows_total
                        bar.set_postfix_str(f"{e.rows_done}/{e.rows_total} rows {e.samples_per_s:.0f} rows/s", refresh=False)
                        bar.refresh()
                    elif e.kind == job_pb2.JOB_EVENT_KIND_PROGRESS:
                        total = e.elapsed_s + max(e.eta_s, 0.0)
                        if e.eta_s >= 0 and total > 0:
                            bar.n = min(100.0, 100.0 * e.elapsed_s / total)
                        bar.set_postfix_str(f"epoch {e.epoch} step {e.step} loss {e.loss:.3f} {e.samples_per_s:.0f}/s", refresh=False)
                        bar.refresh()
                    elif e.kind == job_pb2.JOB_EVENT_KIND_VALIDATION:
                        bar.write(f"  validation at step {e.step}: {e.val_score:.4f}")
                break
            except EmberRpcError as err:  # a dropped stream: pick it up where it stopped
                if err.code != grpc.StatusCode.UNAVAILABLE:
                    bar.close()
                    raise
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > self.reconnect_s:
                    bar.close()
                    raise DaemonLost(self.address, job, now - lost_since, err.message) from None
                time.sleep(0.5)
        last = self.get_job(job.id)
        if last.state == job_pb2.JOB_STATE_SUCCEEDED:
            bar.n = 100
        bar.refresh()
        bar.close()
        return last

    # ---- artifacts --------------------------------------------------------------------------
    def download(self, artifact_id: str, dest: str | os.PathLike) -> list[Path]:
        """Fetch an artifact's files into ``dest`` (each file written whole, checked by sha256)."""
        dest = Path(dest)
        written, cur, h, tmp = [], None, None, None
        try:
            for chunk in self.artifacts.DownloadArtifact(
                art_pb.DownloadArtifactRequest(id=artifact_id), metadata=self._md, timeout=self.timeout("DownloadArtifact")
            ):
                if cur is None:
                    target = dest / chunk.path
                    if dest.resolve() not in target.resolve().parents:
                        raise EmberRpcError(grpc.StatusCode.DATA_LOSS, f"artifact path {chunk.path!r} escapes {dest}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp_path = target.with_name(f".{target.name}.part")
                    cur, h, tmp = target, hashlib.sha256(), open(tmp_path, "wb")
                tmp.write(chunk.data)
                h.update(chunk.data)
                if chunk.last:
                    tmp.close()
                    if h.hexdigest() != chunk.sha256:
                        raise EmberRpcError(grpc.StatusCode.DATA_LOSS, f"{chunk.path}: sha256 mismatch; download again")
                    os.replace(tmp.name, cur)
                    written.append(cur)
                    cur = tmp = None
        except grpc.RpcError as e:
            raise EmberRpcError.from_grpc(e) from None
        return written
