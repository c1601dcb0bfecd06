"""A daemon that strangers can call (issue 13): every refusal happens at the door, with the
right status and a message naming the field, and leaves the registry and the disk exactly
as they were. Fast: the models here are a tabular MLP and a tiny timm net on 32-pixel
images; the starvation case with more idle streams than RPC threads is at the end (slow)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import threading
import time
from dataclasses import asdict

import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from ember import Client, EmberRpcError
from ember.client import _call, table_bytes
from ember.v1 import dataset_service_pb2 as ds_pb
from ember.v1 import job_pb2, job_service_pb2, model_pb2, table_pb2
from ember.v1 import model_service_pb2 as model_pb
from emberd.engine.sources import ReadPolicy, read_regular_file, reading_under
from emberd.server import create_server
from emberd.settings import Settings, load_settings

from ..conftest import tree_state
from ..daemon_helpers import tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}
PIXELS = 64 * 64  # this daemon's --max-image-pixels
ROWS = 20_000  # this daemon's --max-predict-rows


def png(size: int, color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (color, 255 - color, 90)).save(buf, format="PNG")
    return buf.getvalue()


def images(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["dark", "light"], size=n)
    return pd.DataFrame({"image": [png(32, 30 if y == "dark" else 220) for y in labels], "label": labels})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("hardening")
    data, outside = base / "data", base / "outside"
    data.mkdir()
    outside.mkdir()
    # A HuggingFace-looking folder and a table outside the roots: what a caller must not get at
    (outside / "secret_model").mkdir()
    (outside / "secret_model" / "config.json").write_text('{"model_type": "bert"}')
    tabular(20).to_csv(outside / "secret.csv", index=False)
    (outside / "photo.png").write_bytes(png(32, 30))
    os.symlink(outside / "secret.csv", data / "link_to_secret.csv")
    os.symlink(outside / "photo.png", data / "link_to_photo.png")
    (data / "photo.png").write_bytes(png(32, 220))
    os.mkfifo(data / "fifo.png")
    settings = Settings(
        port=0, root=str(base / "root"), data_roots=(str(data),), max_predict_rows=ROWS, max_image_pixels=PIXELS,
        max_streams=3, max_heavy_calls=4, rpc_threads=12, upload_idle_timeout_s=2.0,
    )
    d = create_server(settings)
    c = Client(f"127.0.0.1:{d.port}")
    hp = {**FAST, "env.eval_batch_size": 1}  # one row per slice: a long Predict has many places to stop
    job = c.wait(c.fit("tab", tabular(), label="label", time_limit=60, hyperparameters=hp), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    img_hp = {"model.timm_image.checkpoint_name": "test_resnet", "model.timm_image.image_size": 32, "optim.max_epochs": 2,
              "optim.lr": 1e-3, "optim.head_init_rows": 0}
    job = c.wait(c.fit("img", images(24), label="label", time_limit=60, hyperparameters=img_hp), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    yield {"daemon": d, "client": c, "data": data, "outside": outside, "root": base / "root"}
    c.close()
    d.stop(1)


def state(env) -> tuple:
    """What a refusal must not change: the registry's rows and every file under the root
    (the registry's own files aside: reads may touch the WAL's index)."""
    app = env["daemon"].app
    files = {k: v for k, v in tree_state(env["root"]).items() if not k.startswith("registry.sqlite")}
    rows = (
        [asdict(r) for r in app.registry.models()],
        [[asdict(v) for v in app.registry.versions(r.name)] for r in app.registry.models()],
        [asdict(r) for r in app.registry.datasets()],
        [(j.id, j.state) for j in app.registry.jobs()],
    )
    return files, rows


def refused(env, fn, code: grpc.StatusCode, *words: str) -> str:
    """``fn`` fails with ``code``, its message holds ``words``, and nothing changed."""
    before = state(env)
    with pytest.raises(EmberRpcError) as e:
        fn()
    assert e.value.code == code, (e.value.code, e.value.message)
    for w in words:
        assert w in e.value.message, (w, e.value.message)
    assert state(env) == before
    return e.value.message


# ---- paths -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["model.hf_text.checkpoint_name", "model.timm_image.checkpoint_name"])
def test_checkpoint_folder_outside_the_roots_is_denied_without_saying_if_it_exists(env, key):
    c = env["client"]
    present = str(env["outside"] / "secret_model")
    absent = str(env["outside"] / "no_such_model")
    frame = c.upload(tabular(40).assign(text=["some words here"] * 40))
    m1 = refused(env, lambda: c.fit("new", frame, label="label", hyperparameters={key: present}), grpc.StatusCode.PERMISSION_DENIED, key, "data roots")
    m2 = refused(env, lambda: c.fit("new", frame, label="label", hyperparameters={key: absent}), grpc.StatusCode.PERMISSION_DENIED, key)
    assert m1.replace(present, "X") == m2.replace(absent, "X")  # the same words whether it exists or not


def test_checkpoint_relative_path_and_symlink_out_of_the_roots(env):
    c = env["client"]
    frame = c.upload(tabular(40).assign(text=["some words here"] * 40))
    refused(env, lambda: c.fit("new", frame, label="label", hyperparameters={"model.hf_text.checkpoint_name": "../outside/secret_model"}),
            grpc.StatusCode.INVALID_ARGUMENT, "model.hf_text.checkpoint_name", "absolute")
    os.symlink(env["outside"] / "secret_model", env["data"] / "model_link")
    refused(env, lambda: c.fit("new", frame, label="label", hyperparameters={"model.hf_text.checkpoint_name": str(env["data"] / "model_link")}),
            grpc.StatusCode.PERMISSION_DENIED, "model.hf_text.checkpoint_name")


def test_table_path_outside_the_roots_or_through_a_symlink_is_denied(env):
    c = env["client"]
    for path in (str(env["outside"] / "secret.csv"), str(env["outside"] / "absent.csv"), str(env["data"] / "link_to_secret.csv")):
        msg = refused(env, lambda: _fit_path(c, path), grpc.StatusCode.PERMISSION_DENIED, "train_data", "data roots")
        assert "no such file" not in msg


def _fit_path(c: Client, path: str) -> None:
    _call(c.models.Fit, model_pb.FitRequest(model_name="new", train_data=table_pb2.TableData(path=path), options=c.options(label="label")), metadata=c._md)


def raw_fit(c: Client, name: str, frame: pd.DataFrame, **options) -> None:
    """A Fit with the rows inline exactly as given (``Client`` would read local image paths
    itself and send their bytes: a stranger's client sends paths)."""
    _call(c.models.Fit, model_pb.FitRequest(model_name=name, train_data=table_pb2.TableData(parquet=table_bytes(frame)),
                                            options=c.options(**options)), metadata=c._md)


def raw_predict(c: Client, name: str, frame: pd.DataFrame) -> model_pb.PredictResponse:
    return _call(c.models.Predict, model_pb.PredictRequest(model_name=name, data=table_pb2.TableData(parquet=table_bytes(frame))), metadata=c._md)


def test_image_cells_outside_the_roots_are_denied_in_fit_and_predict(env):
    c = env["client"]
    for cell in (str(env["outside"] / "photo.png"), str(env["data"] / "link_to_photo.png")):
        frame = pd.DataFrame({"image": [str(env["data"] / "photo.png")] * 6, "label": ["dark", "light"] * 3})
        frame.loc[2, "image"] = cell
        refused(env, lambda: raw_fit(c, "new", frame, label="label"), grpc.StatusCode.PERMISSION_DENIED, "column 'image' row 2")
        refused(env, lambda: raw_predict(c, "img", pd.DataFrame({"image": [cell]})), grpc.StatusCode.PERMISSION_DENIED, "data roots")
    # inside the roots, a path is read (the same pixels as the bytes)
    inside = _call(c.models.Predict, model_pb.PredictRequest(model_name="img", with_probabilities=True, data=table_pb2.TableData(
        parquet=table_bytes(pd.DataFrame({"image": [str(env["data"] / "photo.png")]})))), metadata=c._md)
    inline = c.predict("img", pd.DataFrame({"image": [png(32, 220)]}), probabilities=True)
    assert list(inside.probabilities) == pytest.approx(list(inline.probabilities), abs=1e-6)


def test_a_fifo_image_is_refused_at_once_and_later_predicts_still_answer(env):
    c = env["client"]
    t0 = time.monotonic()
    fifo = pd.DataFrame({"image": [str(env["data"] / "fifo.png")]})
    refused(env, lambda: raw_predict(c, "img", fifo), grpc.StatusCode.INVALID_ARGUMENT, "fifo.png", "regular file")
    assert time.monotonic() - t0 < 10
    assert len(c.predict("img", images(2)).labels) == 2
    with reading_under(ReadPolicy.confined([env["data"]])), pytest.raises(Exception, match="regular file"):
        read_regular_file(env["data"] / "fifo.png", "image")


# ---- options -------------------------------------------------------------------------------
BAD_OPTIONS = {
    "time_limit negative": ({"time_limit": -5}, "time_limit"),
    "time_limit nan": ({"time_limit": math.nan}, "time_limit"),
    "time_limit inf": ({"time_limit": math.inf}, "time_limit"),
    "lr nan": ({"hyperparameters": {"optim.lr": math.nan}}, "optim.lr"),
    "lr negative": ({"hyperparameters": {"optim.lr": -1e-3}}, "optim.lr"),
    "batch size zero": ({"hyperparameters": {"env.batch_size": 0}}, "env.batch_size"),
    "batch size negative": ({"hyperparameters": {"env.batch_size": -8}}, "env.batch_size"),
    "batch size fractional": ({"hyperparameters": {"env.batch_size": 2.5}}, "env.batch_size"),
    "holdout 0": ({"hyperparameters": {"env.holdout_frac": 0}}, "env.holdout_frac"),
    "holdout 1.5": ({"hyperparameters": {"env.holdout_frac": 1.5}}, "env.holdout_frac"),
    "dropout 1": ({"hyperparameters": {"model.fusion_mlp.dropout": 1.0}}, "model.fusion_mlp.dropout"),
    "epochs 0": ({"hyperparameters": {"optim.max_epochs": 0}}, "optim.max_epochs"),
    "a list for a number": ({"hyperparameters": {"optim.lr": [1, 2]}}, "optim.lr"),
    "a number for a name": ({"hyperparameters": {"model.timm_image.checkpoint_name": 5}}, "model.timm_image.checkpoint_name"),
    "seed negative": ({"seed": -1}, "seed"),
    "unknown column type": ({"column_types": {"nope": "text"}}, "column_types"),
    "devices beyond the cores": ({"devices": (os.cpu_count() or 1) + 1}, "env.devices"),
    "devices in hyperparameters beyond the cores": ({"hyperparameters": {"env.devices": 4096}}, "env.devices"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_are_invalid_argument_naming_the_key_and_write_nothing(env, case):
    c = env["client"]
    options, key = BAD_OPTIONS[case]
    train = c.upload(tabular(40))
    msg = refused(env, lambda: c.fit("new", train, label="label", **options), grpc.StatusCode.INVALID_ARGUMENT, key)
    assert not (env["root"] / "models" / "new").exists()
    if "must be" in msg:
        assert any(ch.isdigit() for ch in msg.split("must be")[1])  # the allowed range is spelled out


def test_a_model_name_must_match_in_full(env):
    c = env["client"]
    train = c.upload(tabular(40))
    for name in ("tab\n", "tab ", "-tab", "a/b", "x" * 129):
        refused(env, lambda: c.fit(name, train, label="label"), grpc.StatusCode.INVALID_ARGUMENT, "model name")
    refused(env, lambda: c.predict("tab\n", tabular(2)), grpc.StatusCode.INVALID_ARGUMENT, "model name")


# ---- limits --------------------------------------------------------------------------------
def test_an_image_over_the_pixel_limit_is_invalid_argument_in_fit_and_predict(env):
    c = env["client"]
    big = png(65, 10)  # 65 x 65 > 64 x 64
    uri = "data:image/png;base64," + base64.b64encode(big).decode()
    refused(env, lambda: c.predict("img", pd.DataFrame({"image": [big]})), grpc.StatusCode.INVALID_ARGUMENT, "65x65", "--max-image-pixels")
    refused(env, lambda: c.predict("img", pd.DataFrame({"image": [uri]})), grpc.StatusCode.INVALID_ARGUMENT, "--max-image-pixels")
    frame = images(6)
    frame["image"] = frame["image"].astype(object)
    frame.loc[3, "image"] = big
    frame = c.upload(frame)
    refused(env, lambda: c.fit("new", frame, label="label"), grpc.StatusCode.INVALID_ARGUMENT, "row 3", "--max-image-pixels")


def test_json_nested_too_deep_is_invalid_argument(env):
    c = env["client"]
    for depth in (40, 200_000):  # the second would be a RecursionError in json.loads
        deep = "[" * depth + "]" * depth
        rows = table_pb2.TableData(json_records='[{"x": 1, "x2": 0, "color": "red", "z": ' + deep + "}]")
        refused(env, lambda: _call(c.models.Predict, model_pb.PredictRequest(model_name="tab", data=rows), metadata=c._md),
                grpc.StatusCode.INVALID_ARGUMENT, "json_records", "nested deeper")
        req = model_pb.FitRequest(model_name="new", train_data=table_pb2.TableData(json_records=tabular(20).to_json(orient="records")),
                                  options=model_pb.FitOptions(label="label", hyperparameters={"optim.lr": deep}))
        refused(env, lambda: _call(c.models.Fit, req, metadata=c._md), grpc.StatusCode.INVALID_ARGUMENT, "optim.lr", "nested deeper")


def test_predict_has_a_row_cap_that_points_to_batches(env):
    c = env["client"]
    refused(env, lambda: raw_predict(c, "tab", tabular(ROWS + 1)), grpc.StatusCode.INVALID_ARGUMENT, f"at most {ROWS}", "--max-predict-rows", "Export")


def test_upload_whose_size_disagrees_with_its_header_is_refused_and_leaves_no_file(env):
    c = env["client"]
    data = tabular(30).to_csv(index=False).encode()
    sha = hashlib.sha256(data).hexdigest()
    for size in (len(data) - 1, len(data) + 1, 0):
        def upload(size=size):
            parts = [ds_pb.UploadDatasetRequest(header=ds_pb.UploadHeader(display_name="t", format="csv", sha256=sha, size_bytes=size)),
                     ds_pb.UploadDatasetRequest(chunk=data)]
            return _call(c.datasets.UploadDataset, iter(parts), metadata=c._md)
        refused(env, upload, grpc.StatusCode.INVALID_ARGUMENT, "size_bytes")
    assert not list((env["root"] / "datasets").glob(".upload-*"))


def test_words_or_lists_in_a_numeric_column_are_invalid_argument_never_the_mean(env):
    c = env["client"]
    rows = tabular(3).drop(columns="label").to_dict(orient="records")
    for cell in ("lots", [1, 2], {"a": 1}, True):
        bad = [dict(r) for r in rows]
        bad[1]["x"] = cell
        req = model_pb.PredictRequest(model_name="tab", data=table_pb2.TableData(json_records=json.dumps(bad)))
        refused(env, lambda: _call(c.models.Predict, req, metadata=c._md), grpc.StatusCode.INVALID_ARGUMENT, "numeric column 'x'", "row 1")
    rows = tabular(3).drop(columns="label")
    train = tabular(40).astype({"x": str})
    train.at[5, "x"] = "many"
    train = c.upload(train)
    refused(env, lambda: c.fit("new", train, label="label", column_types={"x": "numeric"}), grpc.StatusCode.INVALID_ARGUMENT, "numeric column 'x'", "row 5")
    gaps = rows.copy()
    gaps.at[1, "x"] = None  # a missing value is still allowed (read as the column's mean)
    assert len(c.predict("tab", gaps).labels) == 3


# ---- versionless models --------------------------------------------------------------------
def test_a_first_fit_cancelled_before_it_ran_leaves_no_model_and_an_interrupted_one_is_unfinished(env):
    c = env["client"]
    long = c.fit("busy", tabular(20_000, seed=2), label="label", time_limit=30,
                 hyperparameters={"optim.max_epochs": 100, "env.batch_size": 8, "optim.checkpoint_interval_s": 1, "optim.val_check_interval": 0.05})
    queued = c.fit("never", tabular(40), label="label", hyperparameters=FAST)
    assert c.get_model("never").state == model_pb2.MODEL_STATE_TRAINING
    assert c.cancel(queued.id).state == job_pb2.JOB_STATE_CANCELLED
    assert "never" not in {m.name for m in c.list_models()}
    assert not (env["root"] / "models" / "never").exists()
    for r in c.watch(long.id):
        if r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT:
            break
    assert c.cancel(long.id).state == job_pb2.JOB_STATE_CANCELLED
    m = c.get_model("busy")
    assert m.state == model_pb2.MODEL_STATE_UNFINISHED and m.current_version == 0
    assert c.get_model("tab").state == model_pb2.MODEL_STATE_READY
    c.delete_model("busy")
    assert "busy" not in {m.name for m in c.list_models()}


# ---- streams and abandoned work ------------------------------------------------------------
class IdleUpload:
    """An upload that sends its header and then nothing until released."""

    def __init__(self, client: Client) -> None:
        self.release = threading.Event()
        self.code: grpc.StatusCode | None = None
        self.thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self.thread.start()

    def _run(self, c: Client) -> None:
        def parts():
            yield ds_pb.UploadDatasetRequest(header=ds_pb.UploadHeader(display_name="idle", format="csv", sha256="0" * 64, size_bytes=10))
            self.release.wait(120)

        try:
            c.datasets.UploadDataset(parts(), metadata=c._md, timeout=120)
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            self.code = e.code()


def health_ms(port: int) -> float:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        t0 = time.monotonic()
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        return 1000 * (time.monotonic() - t0)


def test_streams_past_their_cap_are_resource_exhausted_and_idle_uploads_time_out(env):
    d, c = env["daemon"], env["client"]
    idle = [IdleUpload(c) for _ in range(5)]  # the cap is 3
    time.sleep(1.0)
    assert sorted(str(u.code) for u in idle if u.code is not None) == [str(grpc.StatusCode.RESOURCE_EXHAUSTED)] * 2
    assert max(health_ms(d.port) for _ in range(5)) < 100
    t0 = time.monotonic()
    assert c.get_model("tab").name == "tab" and time.monotonic() - t0 < 1
    for u in idle:
        u.thread.join(15)  # cancelled by the daemon after 2 s of silence
    assert sorted(str(u.code) for u in idle) == sorted([str(grpc.StatusCode.RESOURCE_EXHAUSTED)] * 2 + [str(grpc.StatusCode.CANCELLED)] * 3)
    deadline = time.monotonic() + 5  # the daemon's side of a cancelled call finishes just after the client's
    while list((env["root"] / "datasets").glob(".upload-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((env["root"] / "datasets").glob(".upload-*"))
    assert c.upload(tabular(12, seed=9))  # the slots are free again


def test_a_predict_whose_deadline_passed_stops_and_frees_the_model(env, caplog):
    c = env["client"]
    rows = tabular(ROWS, seed=3).drop(columns="label")  # one row per slice: many seconds of work
    with pytest.raises(grpc.RpcError) as e:
        c.models.Predict(model_pb.PredictRequest(model_name="tab", data=c.rows(rows)), metadata=c._md, timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    t0 = time.monotonic()
    assert len(c.predict("tab", rows.head(1)).labels) == 1
    assert time.monotonic() - t0 < 5  # the abandoned call no longer holds the model
    deadline = time.monotonic() + 10
    while "stopped after" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert stopped and f"of {ROWS} rows" in stopped[0]
    assert int(stopped[0].split("stopped after ")[1].split()[0]) < ROWS


# ---- secrets -------------------------------------------------------------------------------
def test_token_from_a_file_or_the_environment(tmp_path):
    f = tmp_path / "token"
    f.write_text("s3cret\n")
    assert load_settings(["--token-file", str(f)], env={}).token == "s3cret"
    assert load_settings([], env={"EMBER_TOKEN": "from-env"}).token == "from-env"
    with pytest.raises(SystemExit, match="once"):
        load_settings(["--token-file", str(f), "--token", "x"], env={})
    with pytest.raises(SystemExit, match="rpc_threads"):
        load_settings(["--rpc-threads", "8"], env={})


# ---- starvation with more idle streams than RPC threads (slow) ------------------------------
@pytest.mark.slow
def test_health_and_unary_calls_answer_while_more_streams_than_threads_are_open(tmp_path):
    d = create_server(Settings(port=0, root=str(tmp_path / "root")))  # the defaults: 32 threads, 12 streams
    c = Client(f"127.0.0.1:{d.port}")
    try:
        job = c.fit("long", tabular(20_000, seed=1), label="label", time_limit=40,
                    hyperparameters={"optim.max_epochs": 100, "env.batch_size": 8})
        watchers: list[grpc.StatusCode | None] = []

        def watch() -> None:
            try:
                for _ in c.jobs.WatchJob(job_service_pb2.WatchJobRequest(id=job.id), metadata=c._md, timeout=60):
                    pass
                watchers.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                watchers.append(e.code())

        threads = [threading.Thread(target=watch, daemon=True) for _ in range(20)]
        for t in threads:
            t.start()
        idle = [IdleUpload(c) for _ in range(20)]  # 40 streams asked for, 32 threads
        time.sleep(2)
        worst = max(health_ms(d.port) for _ in range(20))
        t0 = time.monotonic()
        c.list_models()
        c.list_jobs()
        unary_ms = 1000 * (time.monotonic() - t0)
        print(f"health worst {worst:.1f} ms, ListModels + ListJobs {unary_ms:.1f} ms with 40 streams asked for")
        assert worst < 100 and unary_ms < 1000
        refusals = sum(1 for u in idle if u.code == grpc.StatusCode.RESOURCE_EXHAUSTED) + watchers.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert refusals == 40 - 12
        c.cancel(job.id)
        for u in idle:
            u.release.set()
    finally:
        c.close()
        d.stop(1)
