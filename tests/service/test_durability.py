"""Durability: a kill at each named crash point (``EMBER_FAULT``), then a restart, leaves a
registry that opens and agrees with the files (slow: a daemon process per kill); and the
registry's integrity (rebuild from disk, refusal to start on what cannot be rebuilt; the WAL
checkpoint and schema migration are in tests/unit/test_registry.py). Tabular models: they train in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest

from ember import Client, EmberRpcError
from ember.v1 import dataset_service_pb2 as ds_pb
from ember.v1 import job_pb2
from emberd.engine.faults import POINTS
from emberd.engine.storage import read_json
from emberd.recovery import Unrecoverable, check
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import free_port, start_daemon_process, tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}
# a fit that checkpoints within a second or two and then keeps training
LONG = {"optim.max_epochs": 100, "env.batch_size": 8, "optim.checkpoint_interval_s": 1, "optim.val_check_interval": 0.02}


def _ok(job):
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    return job


def _leftovers(root):
    return sorted(
        str(p.relative_to(root)) for p in root.rglob(".*")
        if p.name.endswith((".staging", ".tmp")) or ".deleted" in p.name or p.name.startswith(".upload-")
    )


def check_invariants(c: Client, root, keep_rows, keep_proba) -> None:
    """What every restart promises, whatever instant the kill hit."""
    assert check(root) == [], check(root)  # every file has its record and every record its files
    assert _leftovers(root) == []
    for m in c.list_models():
        for v in m.versions:  # every listed version's files exist and load
            c.predict(m.name, keep_rows.drop(columns="label").head(3), version=v.version)
    jobs = c.list_jobs()
    assert not [j for j in jobs if j.state in (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING)]
    for j in jobs:  # a job's state agrees with the versions: SUCCEEDED <=> its version is there
        if j.state != job_pb2.JOB_STATE_SUCCEEDED:
            continue
        versions = {v.version: v for v in c.get_model(j.model_name).versions}
        assert j.version in versions and versions[j.version].job_id == j.id, (j, versions)
    for m in c.list_models():  # exactly one version per job
        ids = [v.job_id for v in m.versions if v.job_id]
        assert len(ids) == len(set(ids)), m
    r = c.predict("keep", keep_rows.drop(columns="label"), probabilities=True)
    assert np.array_equal(np.asarray(r.probabilities), keep_proba)  # earlier models predict identically


@pytest.mark.slow
def test_kill_at_every_crash_point_then_restart(tmp_path):
    root, port = tmp_path / "root", free_port()
    keep_rows = tabular(seed=9)
    proc = start_daemon_process(root, port)
    try:
        with Client(f"127.0.0.1:{port}") as c:
            _ok(c.wait(c.fit("keep", tabular(), label="label", time_limit=30, hyperparameters=FAST), progress=False))
            keep_proba = np.asarray(c.predict("keep", keep_rows.drop(columns="label"), probabilities=True).probabilities)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        # a clean stop checkpoints the WAL: the main file alone holds everything
        wal = root / "registry.sqlite-wal"
        assert not wal.exists() or wal.stat().st_size == 0

        def armed(point):
            return start_daemon_process(root, port, env={"EMBER_FAULT": point})

        def died(p):
            assert p.wait(120) == -signal.SIGKILL

        seen = set()

        # upload.mid: the daemon dies halfway through an upload
        proc = armed("upload.mid")
        with Client(f"127.0.0.1:{port}") as c, pytest.raises(EmberRpcError):
            c.upload(tabular(seed=11))
        died(proc)
        seen.add("upload.mid")
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            check_invariants(c, root, keep_rows, keep_proba)
            assert len(c.datasets.ListDatasets(ds_pb.ListDatasetsRequest()).datasets) == 1  # keep's train data only
        proc.send_signal(signal.SIGTERM), proc.wait(30)

        # checkpoint.written: worker and daemon die right after a checkpoint; Resume finishes the run
        proc = armed("checkpoint.written")
        with Client(f"127.0.0.1:{port}") as c:
            # the budget runs from the job's start: room for a first checkpoint while a just-started daemon warms its workers
            job = c.fit("ckpt", tabular(n=20000, seed=2), label="label", time_limit=30, hyperparameters=LONG)
        died(proc)
        seen.add("checkpoint.written")
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            assert c.get_job(job.id).state == job_pb2.JOB_STATE_INTERRUPTED
            check_invariants(c, root, keep_rows, keep_proba)
            resumed = _ok(c.wait(c.resume("ckpt"), progress=False))
            assert resumed.version == 1 and [v.version for v in c.get_model("ckpt").versions] == [1]
            check_invariants(c, root, keep_rows, keep_proba)
        proc.send_signal(signal.SIGTERM), proc.wait(30)

        # publish.renamed: killed after the version's rename, before anything recorded it
        # publish.recorded: the daemon dies after recording the version, before the job's state
        for point, model in (("publish.renamed", "renamed"), ("publish.recorded", "recorded")):
            proc = armed(point)
            with Client(f"127.0.0.1:{port}") as c:
                job = c.fit(model, tabular(seed=3), label="label", time_limit=30, hyperparameters=FAST)
            died(proc)
            seen.add(point)
            proc = start_daemon_process(root, port)
            with Client(f"127.0.0.1:{port}") as c:
                after = c.get_job(job.id)
                assert after.state == job_pb2.JOB_STATE_SUCCEEDED and after.version == 1, after
                m = c.get_model(model)
                assert m.current_version == 1 and [(v.version, v.job_id) for v in m.versions] == [(1, job.id)]
                assert list(c.watch(job.id))[-1].job.state == job_pb2.JOB_STATE_SUCCEEDED
                with pytest.raises(EmberRpcError) as e:  # Resume can never publish the run twice
                    c.resume(model)
                assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
                check_invariants(c, root, keep_rows, keep_proba)
            proc.send_signal(signal.SIGTERM), proc.wait(30)

        # dump.mid: the daemon dies with a dump staged
        proc = armed("dump.mid")
        with Client(f"127.0.0.1:{port}") as c, pytest.raises(EmberRpcError):
            c.dump("keep")
        died(proc)
        seen.add("dump.mid")
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            check_invariants(c, root, keep_rows, keep_proba)
            assert not [p for p in (root / "artifacts").iterdir()]
        proc.send_signal(signal.SIGTERM), proc.wait(30)

        # export.mid: the export process dies with its bundle staged; the daemon answers and lives
        proc = armed("export.mid")
        with Client(f"127.0.0.1:{port}") as c:
            with pytest.raises(EmberRpcError) as e:
                c.export("keep")
            assert e.value.code == grpc.StatusCode.INTERNAL
            seen.add("export.mid")
            assert proc.poll() is None
            check_invariants(c, root, keep_rows, keep_proba)
        proc.send_signal(signal.SIGTERM), proc.wait(30)
        assert seen == set(POINTS)
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            check_invariants(c, root, keep_rows, keep_proba)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


# ---- integrity ----------------------------------------------------------------------------
def _daemon(root, **kw):
    return create_server(Settings(port=0, root=str(root), **kw))


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A root with a model (two versions, an alias), a dataset and a dump, its daemon stopped."""
    root = tmp_path_factory.mktemp("durable") / "root"
    d = _daemon(root)
    with Client(f"127.0.0.1:{d.port}") as c:
        _ok(c.wait(c.fit("m", tabular(), label="label", time_limit=30, hyperparameters=FAST), progress=False))
        _ok(c.wait(c.fit("m", tabular(seed=1), time_limit=30, hyperparameters=FAST), progress=False))
        c.set_alias("m", "production", 1)
        ds = c.upload(tabular(seed=4))
        art = c.dump("m")
        proba = c.predict("m", tabular(seed=9).drop(columns="label"), probabilities=True).probabilities
        jobs = {j.id for j in c.list_jobs()}
    d.stop(1)
    return root, ds, art.id, list(proba), jobs


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated-main-no-wal"])
def test_damaged_or_lost_registry_is_rebuilt_from_disk(populated, tmp_path, damage, caplog):
    import shutil

    src, ds, art, proba, jobs = populated
    root = tmp_path / "root"
    shutil.copytree(src, root)
    reg = root / "registry.sqlite"
    if damage == "deleted":
        reg.unlink()
    elif damage == "garbage":
        reg.write_bytes(b"not a database" * 1000)
    else:
        reg.write_bytes(reg.read_bytes()[:4096])
        (root / "registry.sqlite-wal").unlink(missing_ok=True)
    d = _daemon(root)
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            m = c.get_model("m")
            assert [v.version for v in m.versions] == [1, 2] and m.current_version == 2 and dict(m.aliases) == {"production": 1}
            assert all(v.job_id in jobs for v in m.versions)  # the jobs are back, SUCCEEDED with their versions
            assert {j.id for j in c.list_jobs()} == jobs
            assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in c.list_jobs())
            assert ds in {x.id for x in c.datasets.ListDatasets(ds_pb.ListDatasetsRequest()).datasets}
            c.download(art, tmp_path / "dump")  # NOT_FOUND unless the dump artifact is recorded again
            assert list(c.predict("m", tabular(seed=9).drop(columns="label"), probabilities=True).probabilities) == proba
            assert c.predict("m", tabular(seed=9).drop(columns="label").head(2), alias="production").version == 1
        assert check(root) == []
    finally:
        d.stop(1)
    assert "rebuilt" in caplog.text


def test_unrebuildable_files_refuse_start_until_registry_rebuild(populated, tmp_path):
    import shutil

    src, *_ = populated
    root = tmp_path / "root"
    shutil.copytree(src, root)
    (root / "registry.sqlite").unlink()
    (root / "models" / "m" / "versions" / "0001" / "lineage.json").write_text("{torn")
    with pytest.raises(Unrecoverable, match="emberd registry rebuild"):
        _daemon(root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "emberd", "registry", "check", "--root", str(root)], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "problem" in out.stdout
    out = subprocess.run([sys.executable, "-m", "emberd", "registry", "rebuild", "--root", str(root)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "lost+found" in out.stdout and (root / "lost+found").is_dir()
    out = subprocess.run([sys.executable, "-m", "emberd", "registry", "check", "--root", str(root)], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "registry OK" in out.stdout, out.stdout
    d = _daemon(root)
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            assert [v.version for v in c.get_model("m").versions] == [2]
    finally:
        d.stop(1)


def test_a_worker_killed_alone_after_publishing_leaves_its_job_succeeded(tmp_path, monkeypatch):
    """The daemon lives and sees the worker die without a result: the version it published
    makes the job SUCCEEDED at once (not INTERRUPTED), and Resume is refused."""
    d = _daemon(tmp_path / "root")
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            monkeypatch.setenv("EMBER_FAULT", "publish.renamed:self")  # read by the spawned worker
            job = c.wait(c.fit("m", tabular(), label="label", time_limit=30, hyperparameters=FAST), progress=False)
            monkeypatch.delenv("EMBER_FAULT")
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.version == 1, job.error
            m = c.get_model("m")
            assert m.current_version == 1 and [(v.version, v.job_id) for v in m.versions] == [(1, job.id)]
            events = list(c.watch(job.id))
            assert events[-1].event.state == job_pb2.JOB_STATE_SUCCEEDED and events[-1].job.state == job_pb2.JOB_STATE_SUCCEEDED
            with pytest.raises(EmberRpcError) as e:
                c.resume("m")
            assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert read_json(tmp_path / "root" / "models" / "m" / "run" / "run.json")["status"] == "succeeded"
    finally:
        d.stop(1)
