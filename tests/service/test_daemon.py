"""The daemon over real gRPC: health, reflection, status codes of bad requests, jobs,
cancel and resume, datasets and the warm cache (fast: tabular models train in seconds)."""

import hashlib
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ember import Client, EmberRpcError
from ember.client import _call, table_bytes
from ember.v1 import dataset_service_pb2 as ds_pb
from ember.v1 import job_pb2, table_pb2
from ember.v1 import model_service_pb2 as model_pb
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("emberd")
    data_root = tmp_path_factory.mktemp("data")
    d = create_server(Settings(port=0, root=str(root / "root"), data_roots=(str(data_root),), max_message_bytes=4 << 20))
    d.data_root = data_root
    yield d
    d.stop(1)


@pytest.fixture(scope="module")
def client(daemon):
    with Client(f"127.0.0.1:{daemon.port}") as c:
        yield c


@pytest.fixture(scope="module")
def trained(client):
    job = client.wait(client.fit("tab", tabular(), label="label", time_limit=30, hyperparameters=FAST), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    return "tab"


def test_health_and_reflection(daemon):
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        for svc in ("ember.v1.ModelService", "ember.v1.JobService"):
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=svc))
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
        assert {"ember.v1.ModelService", "ember.v1.JobService", "ember.v1.DatasetService", "ember.v1.ArtifactService"} <= names


def test_fit_predict_evaluate_and_lineage(client, trained):
    df = tabular(seed=5)
    r = client.predict(trained, df.drop(columns="label"), probabilities=True)
    assert len(r.labels) == len(df) and list(r.classes) == ["a", "b"] and len(r.probabilities) == 2 * len(df)
    assert client.evaluate(trained, df)["acc"] > 0.75
    m = client.get_model(trained)
    assert m.current_version == 1 and m.versions[0].job_id and m.versions[0].train_digest
    job = client.wait(client.fit(trained, tabular(seed=6), time_limit=30, hyperparameters=FAST), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.version == 2
    v2 = client.get_model(trained).versions[1]
    assert v2.parent_version == 1 and v2.forgetting_before > 0 and v2.forgetting_after > 0
    events = list(client.watch(job.id))
    kinds = {e.event.kind for e in events}
    assert job_pb2.JOB_EVENT_KIND_VALIDATION in kinds and events[-1].job.state == job_pb2.JOB_STATE_SUCCEEDED
    stats = client.stats()
    assert stats.cache_misses >= 1 and stats.cache_hits >= 1


def _code(fn):
    with pytest.raises(EmberRpcError) as e:
        fn()
    return e.value.code, e.value.message


def test_bad_requests_get_the_right_status_and_change_nothing(client, daemon, trained, tmp_path):
    before = client.get_model(trained)
    code, msg = _code(lambda: client.predict("no-such-model", tabular().head(2)))
    assert code == grpc.StatusCode.NOT_FOUND and "ListModels" in msg
    code, msg = _code(lambda: client.fit("m2", tabular().drop(columns="label"), label="label"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "label column 'label'" in msg
    new_class = tabular(seed=3)
    new_class.loc[:3, "label"] = "c"
    code, msg = _code(lambda: client.fit(trained, new_class))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "'c'" in msg
    code, msg = _code(lambda: client.fit("../evil", tabular(), label="label"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid" in msg
    outside = tmp_path / "t.csv"
    tabular().to_csv(outside, index=False)
    req = model_pb.FitRequest(model_name="m3", train_data=table_pb2.TableData(path=str(outside)), options=client.options(label="label"))
    code, msg = _code(lambda: _call(client.models.Fit, req))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "data roots" in msg
    inside = daemon.data_root / "t.csv"
    tabular().to_csv(inside, index=False)
    sneaky = table_pb2.TableData(path=str(daemon.data_root / ".." / outside.parent.name / "t.csv"))
    escape = model_pb.FitRequest(model_name="m3", train_data=sneaky, options=client.options(label="label"))
    code, _ = _code(lambda: _call(client.models.Fit, escape))
    assert code == grpc.StatusCode.PERMISSION_DENIED

    def bad_upload():
        data = b"a,b\n1,2\n"
        parts = [ds_pb.UploadDatasetRequest(header=ds_pb.UploadHeader(display_name="x", format="csv", sha256="0" * 64, size_bytes=len(data))),
                 ds_pb.UploadDatasetRequest(chunk=data)]
        return _call(client.datasets.UploadDataset, iter(parts))

    code, msg = _code(bad_upload)
    assert code == grpc.StatusCode.DATA_LOSS and "upload it again" in msg
    huge = model_pb.PredictRequest(model_name=trained, data=table_pb2.TableData(json_records="[" + "1," * (3 << 20) + "1]"))
    code, _ = _code(lambda: _call(client.models.Predict, huge))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    after = client.get_model(trained)
    assert after == before
    assert {m.name for m in client.list_models()} == {trained}


def test_uploads_are_content_addressed(client):
    df = tabular(seed=9)
    a = client.upload(df)
    b = client.upload(df)
    assert a == b == hashlib.sha256(table_bytes(df)).hexdigest()
    assert sum(1 for d in client.datasets.ListDatasets(ds_pb.ListDatasetsRequest()).datasets if d.id == a) == 1


def _upload_raw(client, data: bytes, fmt: str):
    sha = hashlib.sha256(data).hexdigest()
    parts = [ds_pb.UploadDatasetRequest(header=ds_pb.UploadHeader(display_name=f"raw-{fmt}", format=fmt, sha256=sha, size_bytes=len(data))),
             ds_pb.UploadDatasetRequest(chunk=data)]
    return _call(client.datasets.UploadDataset, iter(parts)).dataset


def test_json_lines_uploads_train_and_predict(client, trained):
    df = tabular(seed=11)
    lines = "".join(json.dumps(r) + "\n" for r in df.to_dict(orient="records")).encode()
    ds = _upload_raw(client, lines, "jsonl")
    assert (ds.format, ds.num_rows, list(ds.columns)) == ("jsonl", len(df), list(df.columns))
    r = client.models.Evaluate(model_pb.EvaluateRequest(model_name=trained, data=table_pb2.TableData(dataset_id=ds.id)))
    assert r.scores["acc"] > 0.75  # the rows read back as the numbers and strings they were
    code, message = _code(lambda: _upload_raw(client, b'{"x": 1}\n{"x": \n', "jsonl"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "line 2 is not JSON" in message
    code, message = _code(lambda: _upload_raw(client, b'[1, 2]\n', "jsonl"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "must be objects" in message


def test_busy_model_cancel_and_resume(client):
    big = tabular(n=20000, seed=1)
    hp = {"optim.max_epochs": 200, "env.batch_size": 8, "optim.checkpoint_interval_s": 1, "optim.val_check_interval": 0.02}
    job = client.fit("slow", big, label="label", time_limit=30, hyperparameters=hp)
    # wait for a checkpoint, so the cancelled job has one to resume from (the budget is long
    # so that a loaded machine still reaches one; the job is cancelled once it has)
    for r in client.watch(job.id):
        if r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT:
            break
    assert r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT, f"no checkpoint: {r.job}"
    code, msg = _code(lambda: client.fit("slow", big, label="label"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "is training" in msg
    cancelled = client.cancel(job.id)
    assert cancelled.state == job_pb2.JOB_STATE_CANCELLED
    resumed = client.wait(client.resume("slow"), progress=False)
    assert resumed.state == job_pb2.JOB_STATE_SUCCEEDED, resumed.error
    assert resumed.resumes_job_id == job.id and client.get_model("slow").current_version == 1


def test_auth_token(tmp_path):
    d = create_server(Settings(port=0, root=str(tmp_path / "r"), token="s3cret"))
    try:
        with Client(f"127.0.0.1:{d.port}", token="wrong") as bad:
            code, msg = _code(bad.list_models)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in msg
        with grpc.insecure_channel(f"127.0.0.1:{d.port}") as ch:  # health needs no token
            assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        with Client(f"127.0.0.1:{d.port}", token="s3cret") as good:
            assert good.list_models() == []
    finally:
        d.stop(1)


def test_cli_status_models_and_predict(daemon, trained, tmp_path):
    import subprocess
    import sys

    addr = f"127.0.0.1:{daemon.port}"
    out = subprocess.run([sys.executable, "-m", "ember.cli", "--address", addr, "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "SERVING" in out.stdout
    out = subprocess.run([sys.executable, "-m", "ember.cli", "--address", addr, "models"], capture_output=True, text=True, timeout=60)
    assert trained in out.stdout
    rows = tmp_path / "rows.csv"
    tabular(n=5, seed=11).drop(columns="label").to_csv(rows, index=False)
    out = subprocess.run([sys.executable, "-m", "ember.cli", "--address", addr, "predict", trained, str(rows)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and set(out.stdout.split()) <= {"a", "b"} and len(out.stdout.split()) == 5
    out = subprocess.run([sys.executable, "-m", "ember.cli", "--address", addr, "predict", "nope", str(rows)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "NOT_FOUND" in out.stderr


def test_client_starts_a_local_daemon_once_and_reuses_it(tmp_path):
    from ember.client import ensure_local_daemon

    from ..daemon_helpers import emberd_started_here, free_port, terminate

    port = free_port()
    root = tmp_path / "auto"
    try:
        a = ensure_local_daemon(port=port, root=str(root))
        b = ensure_local_daemon(port=port, root=str(root))
        assert a == b == f"127.0.0.1:{port}"
        pids = emberd_started_here(port)
        assert len(pids) == 1
        with Client(a) as c:
            assert c.list_models() == []
        assert (root / "registry.sqlite").exists()
    finally:
        terminate(emberd_started_here(port))


def test_eight_clients_predict_while_a_fit_runs(client, daemon, trained):
    import threading

    job = client.fit("busy-bee", tabular(n=20000, seed=3), label="label", time_limit=20,
                     hyperparameters={"optim.max_epochs": 200, "env.batch_size": 8})
    errors, answers = [], []

    def hammer(seed):
        with Client(f"127.0.0.1:{daemon.port}") as c:
            for i in range(15):
                try:
                    answers.append(len(c.predict(trained, tabular(n=4, seed=seed * 100 + i).drop(columns="label")).labels))
                except Exception as e:  # noqa: BLE001 - every error is a failure of this test
                    errors.append(repr(e))

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.get_job(job.id).state in (job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_SUCCEEDED)
    client.cancel(job.id)
    assert errors == [] and answers == [4] * 120


def test_export_bundle_through_the_daemon_runs_on_onnxruntime(client, trained, tmp_path):
    """Tabular fusion (numeric + categorical): Export, the artifact stream, the runner."""
    from ember.onnx import OnnxPredictor

    rows = tabular(n=256, seed=11).drop(columns="label")
    art = client.export(trained, parity_data=rows)
    files = {f.name for f in client.download(art.id, tmp_path / "bundle")}
    assert {"model.onnx", "manifest.json"} <= files and set(art.files) >= {"model.onnx", "manifest.json"}
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["parity"]["rows"] == 256 and manifest["parity"]["max_abs_diff"] <= 1e-4
    assert manifest["numeric"]["columns"] == ["x", "x2"] and manifest["categorical"]["columns"] == ["color"]
    got = OnnxPredictor(tmp_path / "bundle").predict(rows)
    assert got.tolist() == list(client.predict(trained, rows).labels)
    code, msg = _code(lambda: client.export(trained, parity_data=rows.drop(columns="color")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'color'" in msg
    code, _ = _code(lambda: client.export("no-such-model"))
    assert code == grpc.StatusCode.NOT_FOUND
    # an older opset: the TorchScript exporter writes LayerNormalization (opset 17) as its
    # primitives, and the parity run proves that graph
    art16 = client.export(trained, parity_data=rows, opset_version=16)
    client.download(art16.id, tmp_path / "bundle16")
    import onnx

    graph16 = onnx.load(str(tmp_path / "bundle16" / "model.onnx"))
    assert next(o.version for o in graph16.opset_import if o.domain in ("", "ai.onnx")) == 16
    assert OnnxPredictor(tmp_path / "bundle16").predict(rows).tolist() == got.tolist()
    # what ONNX cannot express: opset 8 has no Erf (GELU); an opset no exporter writes
    code, msg = _code(lambda: client.export(trained, opset_version=8))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "opset 8" in msg and "Erf (from opset 9)" in msg
    code, msg = _code(lambda: client.export(trained, opset_version=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "7-23" in msg
