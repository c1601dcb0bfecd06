"""Warm workers (forked from the daemon's forkserver) train exactly as cold ones (a fresh
spawned interpreter): same seed, same data, bit-identical weights."""

from __future__ import annotations

import hashlib

import numpy as np
from safetensors.numpy import load_file

from ember import Client
from ember.v1 import job_pb2
from emberd.engine.model_store import ModelStore
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import tabular

HP = {"optim.max_epochs": 2, "optim.lr": 1e-3}  # no time limit: the same number of steps on both


def test_a_warm_worker_trains_the_same_weights_as_a_cold_one(tmp_path):
    weights = {}
    for start in ("spawn", "forkserver"):
        d = create_server(Settings(port=0, root=str(tmp_path / start), worker_start=start))
        try:
            with Client(f"127.0.0.1:{d.port}") as c:
                job = c.wait(c.fit("m", tabular(), label="label", hyperparameters=HP, seed=3), progress=False)
                assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
        finally:
            d.stop(1)
        weights[start] = load_file(str(ModelStore(tmp_path / start / "models" / "m").version_dir(1) / "model.safetensors"))
    cold, warm = weights["spawn"], weights["forkserver"]
    assert cold.keys() == warm.keys() and len(cold) > 2
    for k in cold:
        assert np.array_equal(cold[k], warm[k]), k
    digest = hashlib.sha256(b"".join(cold[k].tobytes() for k in sorted(cold))).hexdigest()
    print(f"cold and warm workers: {len(cold)} tensors, sha256 {digest[:16]}")
