"""The operator's view (issue 16): the Prometheus endpoint moves with real calls, access-log
lines in JSON, google.rpc details on refusals (read by the Python client), client deadlines
and retries against a daemon that stops and comes back, a fit whose daemon was killed, a
graceful SIGTERM with sd_notify, and the systemd unit. The dashboard in Chromium and the
Node client's details: test_dashboard.py and test_polyglot.py."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from ember import Client
from ember.client import DaemonLost, EmberRpcError
from ember.v1 import job_pb2
from ember.v1 import model_service_pb2 as model_pb
from emberd.logs import handler
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import free_port, start_daemon_process, tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("emberd-ops")
    d = create_server(Settings(port=0, root=str(root / "root"), metrics_port=0, http_port=0))
    yield d
    d.stop(1)


@pytest.fixture(scope="module")
def client(daemon):
    with Client(f"127.0.0.1:{daemon.port}") as c:
        yield c


@pytest.fixture(scope="module")
def trained(client):
    job = client.wait(client.fit("ops", tabular(), label="label", time_limit=60, hyperparameters=FAST), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    return job


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# ---- metrics --------------------------------------------------------------------------------
def test_metrics_endpoint_counts_real_calls(daemon, client, trained):
    before = scrape(daemon.metrics_port)
    predict = "/ember.v1.ModelService/Predict"
    client.predict("ops", tabular(7, seed=3))
    client.predict("ops", tabular(7, seed=3))
    with pytest.raises(EmberRpcError):
        client.get_model("no-such-model")
    client.upload(tabular(50, seed=11), "extra")
    after = scrape(daemon.metrics_port)

    assert value(after, "ember_rpc_requests_total", method=predict, code="OK") - value(before, "ember_rpc_requests_total", method=predict, code="OK") == 2
    assert value(after, "ember_rpc_requests_total", method="/ember.v1.ModelService/GetModel", code="NOT_FOUND") >= 1
    assert value(after, "ember_rpc_latency_seconds_count", method=predict) - value(before, "ember_rpc_latency_seconds_count", method=predict) == 2
    assert value(after, "ember_predict_batch_rows_sum") - value(before, "ember_predict_batch_rows_sum") == 14
    assert value(after, "ember_upload_bytes_total") > value(before, "ember_upload_bytes_total")
    assert value(after, "ember_jobs", kind="FIT", state="SUCCEEDED") >= 1
    assert value(after, "ember_job_queue_length") == 0
    assert value(after, "ember_worker_starts_total") >= 1
    assert value(after, "ember_cache_hits_total") - value(before, "ember_cache_hits_total") >= 1  # the second predict was warm
    assert value(after, "ember_cache_misses_total") >= 1 and value(after, "ember_cache_bytes") > 0


def test_a_running_jobs_throughput_and_loss_are_exported(daemon, client, trained):
    job = client.fit("ops", tabular(seed=5), time_limit=60, hyperparameters={"optim.max_epochs": 40, "optim.lr": 1e-3})
    try:
        deadline, seen = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            seen = {k: v for k, v in scrape(daemon.metrics_port).items() if k[0] in ("ember_job_samples_per_second", "ember_job_loss")}
            if len(seen) == 2:
                break
            time.sleep(0.5)
        assert {k[0] for k in seen} == {"ember_job_samples_per_second", "ember_job_loss"}, "no progress of the running job was exported"
        assert all(dict(k[1])["job_id"] == job.id for k in seen)
        assert value(seen, "ember_job_samples_per_second", job_id=job.id, model="ops") > 0
    finally:
        client.cancel(job.id)


# ---- rich errors ----------------------------------------------------------------------------
def test_invalid_argument_names_the_field(client):
    with pytest.raises(EmberRpcError) as e:
        client.fit("errs", tabular(), label="label", hyperparameters={"optim.lr": -1})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.reason == "INVALID_ARGUMENT" and e.value.domain == "ember.v1"
    [(field, why)] = e.value.field_violations
    assert field == "options.hyperparameters[optim.lr]" and "must be" in why
    assert e.value.request_id

    with pytest.raises(EmberRpcError) as e:
        client.fit("errs", tabular(), label="nope")
    assert [f for f, _ in e.value.field_violations] == ["options.label"]
    with pytest.raises(EmberRpcError) as e:
        client.fit("bad/name", tabular(), label="label")
    assert [f for f, _ in e.value.field_violations] == ["model_name"]
    with pytest.raises(EmberRpcError) as e:
        client.fit("errs", "/nowhere/train.csv", label="label")  # not a local file: a dataset id the daemon lacks
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.resource == ("ember.v1.Dataset", "/nowhere/train.csv")


def test_not_found_and_failed_precondition_carry_resource_and_precondition(client, trained):
    with pytest.raises(EmberRpcError) as e:
        client.get_model("ghost")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and e.value.resource == ("ember.v1.Model", "ghost")
    assert e.value.reason == "NOT_FOUND" and e.value.field_violations == []
    with pytest.raises(EmberRpcError) as e:
        client.fit("ops", tabular(), label="color")  # a continued fit cannot change what the model predicts
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    [(kind, subject, description)] = e.value.precondition_violations
    assert kind == "FAILED_PRECONDITION" and subject == "models/ops" and "cannot switch" in description


def test_details_are_a_standard_grpc_status_trailer(daemon):
    """Any gRPC client reads them with its grpc-status library, not only Ember's."""
    from google.rpc import error_details_pb2

    from ember.v1 import model_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            model_service_pb2_grpc.ModelServiceStub(ch).GetModel(model_pb.GetModelRequest(name="ghost"), timeout=10)
    status = rpc_status.from_call(e.value)
    assert status is not None and status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "NOT_FOUND" and info.domain == "ember.v1"


# ---- logs -----------------------------------------------------------------------------------
def test_access_log_lines_in_json_carry_the_call_fields(client, trained):
    buf = io.StringIO()
    h = handler("json", buf)
    access = logging.getLogger("emberd.access")
    access.addHandler(h)
    old = access.level
    access.setLevel(logging.INFO)
    try:
        client.predict("ops", tabular(3))
        with pytest.raises(EmberRpcError):
            client.get_job("0" * 32)
    finally:
        access.removeHandler(h)
        access.setLevel(old)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    ok = next(x for x in lines if x["method"].endswith("/Predict"))
    assert {"time", "level", "logger", "message", "request_id", "method", "model", "duration_ms", "code"} <= set(ok)
    assert ok["code"] == "OK" and ok["model"] == "ops" and ok["logger"] == "emberd.access" and ok["duration_ms"] >= 0
    bad = next(x for x in lines if x["method"].endswith("/GetJob"))
    assert bad["code"] == "NOT_FOUND" and bad["job_id"] == "0" * 32


# ---- client deadlines and retries ----------------------------------------------------------
def test_deadlines_apply_per_method_and_can_be_overridden(daemon):
    # an expired deadline (1e-6 s rounds up to gRPC's 1 ms and a loopback call can make it)
    with Client(f"127.0.0.1:{daemon.port}", timeouts={"ListModels": 0.0}) as c:
        with pytest.raises(EmberRpcError) as e:
            c.list_models()
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert c.timeout("GetModel") == 15.0 and c.timeout("WatchJob") is None
        assert c.stats() is not None  # other methods keep their defaults


def test_idempotent_calls_ride_out_a_daemon_restart_and_others_fail_fast(tmp_path):
    port = free_port()
    settings = Settings(port=port, root=str(tmp_path / "root"))
    d = create_server(settings)
    c = Client(f"127.0.0.1:{port}")
    try:
        assert c.list_models() == []
        d.stop(0)
        t0 = time.monotonic()
        with pytest.raises(EmberRpcError) as e:  # Fit is not retried: a second one could queue a second job
            c._rpc(c.models.Fit, model_pb.FitRequest(model_name="m"))
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - t0 < 1

        restarted: list = []
        timer = threading.Timer(0.6, lambda: restarted.append(create_server(settings)))
        timer.start()
        t0 = time.monotonic()
        assert c.list_models() == []  # retried with backoff until the daemon answered again
        waited = time.monotonic() - t0
        timer.join()
        assert restarted and waited >= 0.3, f"answered after {waited:.2f}s: not the restarted daemon?"
    finally:
        c.close()
        for x in locals().get("restarted", []):
            x.stop(0)


def test_fit_on_a_killed_daemon_raises_saying_to_restart_and_resume(tmp_path, monkeypatch):
    """MultiModalPredictor.fit used to hang for ever once its daemon was SIGKILLed."""
    from ember import MultiModalPredictor

    port = free_port()
    root = tmp_path / "root"
    proc = start_daemon_process(root, port)
    monkeypatch.setenv("EMBER_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setenv("EMBER_RECONNECT_S", "3")
    killed: list[str] = []

    def kill_once_running() -> None:  # SIGKILL the daemon while the fit's job runs
        with Client(f"127.0.0.1:{port}") as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                running = [j.id for j in c.list_jobs() if j.state == job_pb2.JOB_STATE_RUNNING]
                if running:
                    time.sleep(1.0)
                    proc.kill()
                    killed.extend(running)
                time.sleep(0.3)

    killer = threading.Thread(target=kill_once_running)
    killer.start()
    try:
        predictor = MultiModalPredictor(label="label", path=str(tmp_path / "dies"), verbosity=0)
        t0 = time.monotonic()
        with pytest.raises(DaemonLost) as e:
            # long enough to be killed mid-run: a warm worker reaches its first step within a second
            predictor.fit(tabular(n=20000, seed=2), time_limit=120,
                          hyperparameters={"optim.max_epochs": 200, "optim.lr": 1e-3, "optim.patience": 1000, "env.batch_size": 8})
        killer.join()
        assert killed and time.monotonic() - t0 < 120
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and "Restart emberd" in e.value.message and "resume=True" in e.value.message
    finally:
        proc.kill()
        proc.wait()
        killer.join()
    proc = start_daemon_process(root, port)  # back: the job is INTERRUPTED, as the error said
    try:
        with Client(f"127.0.0.1:{port}") as c:
            back = c.get_job(killed[0])
            assert back.state == job_pb2.JOB_STATE_INTERRUPTED and "Resume" in back.error
    finally:
        proc.terminate()
        proc.wait(60)


# ---- service: SIGTERM drain, readiness, sd_notify, unit file --------------------------------
def test_sigterm_drains_and_notifies_systemd_with_json_logs(tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(90)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": sock_path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emberd", "--port", str(port), "--root", str(tmp_path / "root"), "--log-format", "json",
         "--metrics-port", "0", "--drain-s", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        ready = proc.stdout.readline()
        assert ready.startswith(f"emberd ready on 127.0.0.1:{port} metrics="), ready
        assert sock.recv(4096).decode().startswith("READY=1")
        metrics_port = int(ready.split("metrics=")[1].split()[0])
        assert scrape(metrics_port)  # served
        with Client(f"127.0.0.1:{port}") as c:  # a fit: its worker's Lightning must not chatter in the log
            job = c.wait(c.fit("quiet", tabular(), label="label", time_limit=60, hyperparameters=FAST), progress=False)
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096).decode().startswith("STOPPING=1")
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        sock.close()
    raw = [line for line in proc.stderr.read().splitlines() if line.strip()]
    assert all(line.startswith("{") and line.endswith("}") for line in raw), [line for line in raw if not line.startswith("{")]
    lines = [json.loads(line) for line in raw]  # every line is JSON, the worker's too
    messages = [x["message"] for x in lines]
    assert any("listening on" in m for m in messages) and any(m.startswith("emberd stopped (drained") for m in messages)
    fit = next(x for x in lines if x.get("method") == "/ember.v1.ModelService/Fit")
    assert fit["code"] == "OK" and fit["model"] == "quiet" and fit["job_id"] == job.id and fit["request_id"]
    noise = [m for m in messages if any(p in m for p in ("Tip:", "GPU available", "Loading weights", "deprecated", "LOCAL_RANK"))]
    assert not noise, noise


# ---- the Node client reads the same details --------------------------------------------------
NODE_ERRORS = """
const { Client } = require('./lib/client');
const c = new Client(process.argv[1], { timeouts: { ListModels: 0.001 } });
const out = {};
const grab = (name, p) => p.then(() => { out[name] = 'no error'; }, (e) => { out[name] = {
  code: e.codeName, reason: e.reason, domain: e.domain, request_id: e.request_id, field_violations: e.field_violations,
  precondition_violations: e.precondition_violations, resource: e.resource }; });
(async () => {
  await grab('bad_lr', c.unary(c.models, 'Fit', { model_name: 'n', train_data: { json_records: '[{"x": 1, "label": "a"}]' },
    options: { label: 'label', hyperparameters: { 'optim.lr': '-1' } } }));
  await grab('missing', c.unary(c.models, 'GetModel', { name: 'ghost' }));
  const rows = '[{"x": 1, "color": "a", "label": "a"}, {"x": 2, "color": "b", "label": "b"}]';
  await grab('resume', c.unary(c.models, 'Fit', { model_name: 'ops', train_data: { json_records: rows },
    options: { label: 'color' } }));
  await grab('deadline', c.unary(c.models, 'ListModels', {}));
  console.log(JSON.stringify(out));
})().finally(() => c.close());
"""


@pytest.mark.node
def test_node_client_surfaces_the_error_details(daemon, trained):
    from ..daemon_helpers import node

    run = node("-e", NODE_ERRORS, f"127.0.0.1:{daemon.port}", timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["bad_lr"]["code"] == "INVALID_ARGUMENT" and out["bad_lr"]["reason"] == "INVALID_ARGUMENT" and out["bad_lr"]["domain"] == "ember.v1"
    [v] = out["bad_lr"]["field_violations"]
    assert v["field"] == "options.hyperparameters[optim.lr]" and "must be" in v["description"] and out["bad_lr"]["request_id"]
    assert out["missing"]["code"] == "NOT_FOUND" and out["missing"]["resource"] == {"resource_type": "ember.v1.Model", "resource_name": "ghost"}
    [p] = out["resume"]["precondition_violations"]
    assert out["resume"]["code"] == "FAILED_PRECONDITION" and p["subject"] == "models/ops"
    assert out["deadline"]["code"] == "DEADLINE_EXCEEDED"
