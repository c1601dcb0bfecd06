"""SIGKILL of the daemon during a Fit, then a restart (slow)."""

import os
import signal
import time

import pytest

from ember import Client
from ember.v1 import dataset_service_pb2 as ds_pb, job_pb2

from ..daemon_helpers import free_port, start_daemon_process, tabular

pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie has died: it only waits for its parent to read its status)."""
    try:
        return "\tZ" not in next(line for line in open(f"/proc/{pid}/status") if line.startswith("State:"))
    except (OSError, StopIteration):
        return False


def test_daemon_killed_during_fit_restarts_consistent_and_resumes(tmp_path):
    root, port = tmp_path / "root", free_port()
    proc = start_daemon_process(root, port)
    try:
        with Client(f"127.0.0.1:{port}") as c:
            first = c.wait(c.fit("keep", tabular(), label="label", time_limit=30, hyperparameters={"optim.max_epochs": 3}), progress=False)
            assert first.state == job_pb2.JOB_STATE_SUCCEEDED
            dataset = c.upload(tabular(seed=4))
            job = c.fit("victim", tabular(n=20000, seed=2), label="label", time_limit=20,
                        hyperparameters={"optim.max_epochs": 100, "env.batch_size": 8, "optim.checkpoint_interval_s": 1, "optim.val_check_interval": 0.02})
            for r in c.watch(job.id):
                if r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT:
                    break
        family = descendants(proc.pid)  # the forkserver, the worker, the resource tracker
        assert family
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in family if alive(p)], "a worker outlived its daemon"
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            after = c.get_job(job.id)
            assert after.state == job_pb2.JOB_STATE_INTERRUPTED and "Resume" in after.error
            assert c.get_model("keep").current_version == 1
            assert c.evaluate("keep", tabular(seed=7))["acc"] > 0.7
            assert dataset in {d.id for d in c.datasets.ListDatasets(ds_pb.ListDatasetsRequest()).datasets}
            resumed = c.wait(c.resume("victim"), progress=False)
            assert resumed.state == job_pb2.JOB_STATE_SUCCEEDED, resumed.error
            assert c.get_model("victim").current_version == 1
            assert c.evaluate("victim", tabular(seed=8))["acc"] > 0.7
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
