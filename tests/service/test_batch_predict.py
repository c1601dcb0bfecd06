"""BatchPredict over real gRPC with real (tabular) models: a table larger than
--max-predict-rows predicted in a job equals Predict's answers row for row; progress
events arrive; CancelJob and a daemon kill leave no artifact and no staging folder; bad
requests are refused with their status and write nothing."""

from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest

from ember import Client, EmberRpcError
from ember.v1 import job_pb2, model_pb2, table_pb2
from ember.v1 import model_service_pb2 as model_pb
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import free_port, start_daemon_process, tabular
from .test_hardening import refused

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}
CAP = 100  # --max-predict-rows: the tables below are bigger
# one row per predict slice: a batch prediction of a few thousand rows runs for seconds
SLOW_PREDICT = {**FAST, "env.eval_batch_size": 1}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("emberd") / "root"
    data_root = tmp_path_factory.mktemp("data")
    d = create_server(Settings(port=0, root=str(root), data_roots=(str(data_root),), max_predict_rows=CAP))
    c = Client(f"127.0.0.1:{d.port}")
    for name, label_of in (("tab", None), ("reg", "value")):
        train = tabular()
        if label_of:
            train = train.assign(label=train["x"] * 2 + train["x2"])
        job = c.wait(c.fit(name, train, label="label", time_limit=30, hyperparameters=FAST), progress=False)
        assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    yield {"daemon": d, "client": c, "root": root, "data_root": data_root}
    c.close()
    d.stop(1)


def rows(n: int, seed: int) -> pd.DataFrame:
    return tabular(n=n, seed=seed).drop(columns="label")


def predict_in_calls(c: Client, model: str, df: pd.DataFrame, **kw) -> list[model_pb.PredictResponse]:
    """Predict's answers for ``df``, in calls of at most CAP rows."""
    return [c.predict(model, df.iloc[i : i + CAP], **kw) for i in range(0, len(df), CAP)]


def test_batch_predict_equals_predict_in_input_order(env):
    c = env["client"]
    df = rows(3 * CAP + 17, seed=21)
    with pytest.raises(EmberRpcError) as e:  # too many rows for one Predict call
        c.predict("tab", df)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    job = c.batch_predict("tab", df, probabilities=True)
    assert job.kind == job_pb2.JOB_KIND_BATCH_PREDICT and job.state == job_pb2.JOB_STATE_QUEUED and not job.artifact_id
    got = c.batch_result(job, env["root"].parent / "out", progress=False)
    answers = predict_in_calls(c, "tab", df, probabilities=True)
    classes = list(answers[0].classes)
    assert list(got.columns) == ["label"] + [f"proba_{k}" for k in classes]
    assert got["label"].tolist() == [label for a in answers for label in a.labels]
    want = np.concatenate([np.asarray(a.probabilities, dtype=np.float32).reshape(-1, len(classes)) for a in answers])
    np.testing.assert_allclose(got[[f"proba_{k}" for k in classes]].to_numpy(), want, rtol=0, atol=1e-6)
    assert (env["root"].parent / "out" / "predictions.parquet").exists()

    done = c.get_job(job.id)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED and done.version == 1 and done.artifact_id
    art = env["daemon"].app.registry.artifact(done.artifact_id)
    assert art.kind == "predictions" and list(art.files) == ["predictions.parquet"]
    progress = [r.event for r in c.watch(job.id) if r.event.kind == job_pb2.JOB_EVENT_KIND_PROGRESS]
    assert progress and progress[-1].rows_done == progress[-1].rows_total == len(df)
    assert all(0 < p.rows_done <= len(df) and p.samples_per_s > 0 for p in progress)
    assert [p.rows_done for p in progress] == sorted(p.rows_done for p in progress)
    assert job.id in [j.id for j in c.list_jobs("tab")]


def test_regression_and_server_paths_in_every_format(env):
    c = env["client"]
    df = rows(2 * CAP + 3, seed=22)
    want = [v for a in predict_in_calls(c, "reg", df) for v in a.values]
    for name, write in (("t.parquet", lambda p: df.to_parquet(p, index=False)), ("t.csv", lambda p: df.to_csv(p, index=False)),
                        ("t.tsv", lambda p: df.to_csv(p, sep="\t", index=False)),
                        ("t.jsonl", lambda p: df.to_json(p, orient="records", lines=True))):
        path = env["data_root"] / name
        write(path)
        got = c.batch_result(c.batch_predict("reg", server_path=str(path)), progress=False)
        assert list(got.columns) == ["value"], name
        np.testing.assert_allclose(got["value"].to_numpy(), want, rtol=1e-6, atol=1e-6, err_msg=name)


def first_progress(c: Client, job: job_pb2.Job) -> job_pb2.JobEvent:
    """The job's first progress event (the job runs on)."""
    for r in c.watch(job.id):
        if r.event.kind == job_pb2.JOB_EVENT_KIND_PROGRESS:
            return r.event
    raise AssertionError(f"job {job.id} ended without progress: {r.job}")


def test_cancel_mid_run_leaves_nothing_and_model_keeps_training(env):
    c = env["client"]
    job = c.wait(c.fit("slowpred", tabular(), label="label", time_limit=30, hyperparameters=SLOW_PREDICT), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    job = c.batch_predict("slowpred", rows(20_000, seed=23))
    event = first_progress(c, job)
    assert 0 < event.rows_done < event.rows_total == 20_000, event
    staging = [p for p in (env["root"] / "artifacts").iterdir() if p.name.endswith(".staging")]
    assert staging, "the running job stages its output"
    # a batch prediction does not block training the model
    fit = c.fit("slowpred", tabular(seed=3), time_limit=30, hyperparameters=SLOW_PREDICT)
    cancelled = c.cancel(job.id)
    assert cancelled.state == job_pb2.JOB_STATE_CANCELLED and not cancelled.artifact_id
    assert "no predictions" in cancelled.error
    assert not any(p.exists() for p in staging)
    spec = env["daemon"].app.registry.job(job.id).spec.to_dict()
    assert not (env["root"] / "artifacts" / spec["artifact_id"]).exists()
    assert env["daemon"].app.registry.artifact(spec["artifact_id"]) is None
    assert c.wait(fit, progress=False).state == job_pb2.JOB_STATE_SUCCEEDED


@pytest.mark.parametrize(
    "case",
    ["unknown model", "unknown version", "unknown alias", "no dataset", "outside roots", "relative path", "not a table",
     "inline rows", "no data", "missing column", "bad cell", "empty"],
)
def test_bad_requests_are_refused_and_write_nothing(env, case):
    c, data_root = env["client"], env["data_root"]
    good = rows(5, seed=24)
    (data_root / "empty.csv").write_text("x,x2,color\n")
    (data_root / "coco.json").write_text("{}")
    good.drop(columns="color").to_parquet(data_root / "nocolor.parquet", index=False)
    good.assign(x=["word"] + [1.0] * 4).to_csv(data_root / "badcell.csv", index=False)
    path = lambda p: table_pb2.TableData(path=str(p))  # noqa: E731
    request = {
        "unknown model": (dict(model_name="nope", data=path(data_root / "nocolor.parquet")), grpc.StatusCode.NOT_FOUND, "nope"),
        "unknown version": (dict(model_name="tab", version=9, data=path(data_root / "empty.csv")), grpc.StatusCode.NOT_FOUND, "version 9"),
        "unknown alias": (dict(model_name="tab", alias="prod", data=path(data_root / "empty.csv")), grpc.StatusCode.NOT_FOUND, "prod"),
        "no dataset": (dict(model_name="tab", data=table_pb2.TableData(dataset_id="0" * 64)), grpc.StatusCode.NOT_FOUND, "upload it first"),
        "outside roots": (dict(model_name="tab", data=path("/etc/passwd")), grpc.StatusCode.PERMISSION_DENIED, "data-roots"),
        "relative path": (dict(model_name="tab", data=table_pb2.TableData(path="t.csv")), grpc.StatusCode.INVALID_ARGUMENT, "absolute"),
        "not a table": (dict(model_name="tab", data=path(data_root / "coco.json")), grpc.StatusCode.INVALID_ARGUMENT, "JSON Lines"),
        "inline rows": (dict(model_name="tab", data=Client.rows(good)), grpc.StatusCode.INVALID_ARGUMENT, "Predict"),
        "no data": (dict(model_name="tab"), grpc.StatusCode.INVALID_ARGUMENT, "data is missing"),
        "missing column": (dict(model_name="tab", data=path(data_root / "nocolor.parquet")), grpc.StatusCode.INVALID_ARGUMENT, "color"),
        "bad cell": (dict(model_name="tab", data=path(data_root / "badcell.csv")), grpc.StatusCode.INVALID_ARGUMENT, "row 0"),
        "empty": (dict(model_name="tab", data=path(data_root / "empty.csv")), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    }[case]
    fields, code, words = request
    refused(env, lambda: c._rpc(c.models.BatchPredict, model_pb.BatchPredictRequest(**fields)), code, words)


@pytest.mark.slow
def test_daemon_kill_mid_run_fails_the_job_and_sweeps_its_staging(tmp_path):
    root, port = tmp_path / "root", free_port()
    proc = start_daemon_process(root, port)
    try:
        with Client(f"127.0.0.1:{port}") as c:
            fit = c.wait(c.fit("m", tabular(), label="label", time_limit=30, hyperparameters=SLOW_PREDICT), progress=False)
            assert fit.state == job_pb2.JOB_STATE_SUCCEEDED, fit.error
            job = c.batch_predict("m", rows(20_000, seed=25))
            first_progress(c, job)
            assert [p for p in (root / "artifacts").iterdir() if p.name.endswith(".staging")]
        proc.kill()
        proc.wait(30)
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            after = c.get_job(job.id)
            assert after.state == job_pb2.JOB_STATE_FAILED and "daemon stopped" in after.error and not after.artifact_id
            assert list((root / "artifacts").iterdir()) == []
            assert c.get_model("m").state == model_pb2.MODEL_STATE_READY and not c.get_model("m").training  # READY; the batch job blocked nothing
    finally:
        proc.kill()
        proc.wait(30)
