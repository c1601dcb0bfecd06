"""Warm workers (forked from the daemon's forkserver) train exactly as cold ones (a fresh
spawned interpreter): same seed, same data, bit-identical weights."""

from __future__ import annotations

import hashlib

import numpy as np

from ..daemon_helpers import tabular, warm_and_cold_weights

HP = {"optim.max_epochs": 2, "optim.lr": 1e-3}  # no time limit: the same number of steps on both


def test_a_warm_worker_trains_the_same_weights_as_a_cold_one(tmp_path):
    weights = warm_and_cold_weights(tmp_path, tabular(), HP)
    cold, warm = weights["spawn"], weights["forkserver"]
    assert cold.keys() == warm.keys() and len(cold) > 2
    for k in cold:
        assert np.array_equal(cold[k], warm[k]), k
    digest = hashlib.sha256(b"".join(cold[k].tobytes() for k in sorted(cold))).hexdigest()
    print(f"cold and warm workers: {len(cold)} tensors, sha256 {digest[:16]}")
