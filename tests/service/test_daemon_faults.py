"""SIGKILL of the daemon during a Fit, then a restart (slow)."""

import os
import signal
import time

import pytest

from ember import Client
from ember.v1 import dataset_service_pb2 as ds_pb
from ember.v1 import job_pb2

from ..daemon_helpers import alive, descendants, free_port, start_daemon_process, tabular

pytestmark = pytest.mark.slow


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
