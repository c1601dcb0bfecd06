"""The dynamic batcher alone (issue 15): a failing batch is run again call by call so a bad
call fails alone; batching off (max rows 1 or delay 0) runs each call alone under the
model's lock; the settings are range-checked. Through a real daemon: tests/service/test_batching.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from emberd.batching import Batcher, BatchLimits
from emberd.engine.errors import Cancelled
from emberd.settings import load_settings


def test_a_batch_that_fails_is_run_again_call_by_call():
    """A slice that passes the column checks but fails in the model (here: a row the
    computation refuses) fails alone; the others of its batch get their rows."""
    lock = threading.Lock()
    b = Batcher(lock)
    seen: list[int] = []

    def run(frame: pd.DataFrame) -> np.ndarray:
        seen.append(len(frame))
        if (frame["x"] < 0).any():
            raise ValueError("negative x")
        return frame["x"].to_numpy() * 2

    frames = [pd.DataFrame({"x": [float(i), float(i) + 0.5]}) for i in range(5)]
    frames[3] = pd.DataFrame({"x": [-1.0]})
    out: list = [None] * 5
    limits = BatchLimits(max_rows=64, max_delay_s=0.005)

    def go(i: int) -> None:
        try:
            out[i] = b.run("double", frames[i], run, lambda: True, limits, lambda calls, rows: None)
        except ValueError as e:
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(5)]
    with lock:
        for t in threads:
            t.start()
        while b.queued() < 5:
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert isinstance(out[3], ValueError)
    for i in (0, 1, 2, 4):
        np.testing.assert_array_equal(out[i], frames[i]["x"].to_numpy() * 2)
    assert seen[0] == 9 and sorted(seen[1:]) == [1, 2, 2, 2, 2]  # the batch, then each alone


def test_max_rows_or_delay_off_gives_one_call_per_batch():
    lock = threading.Lock()
    b = Batcher(lock)
    sizes: list[tuple[int, int]] = []
    df = pd.DataFrame({"x": np.zeros(3)})
    for limits in (BatchLimits(max_rows=1, max_delay_s=0.005), BatchLimits(max_rows=64, max_delay_s=0)):
        args = ("k", df, lambda f: f["x"].to_numpy(), lambda: True, limits, lambda c, r: sizes.append((c, r)))
        threads = [threading.Thread(target=b.run, args=args) for _ in range(4)]
        with lock:
            for t in threads:
                t.start()
            time.sleep(0.2)
            assert b.queued() == 0  # nothing queues: each call waits for the lock itself
        for t in threads:
            t.join(10)
    assert sizes == [(1, 3)] * 8
    with pytest.raises(Cancelled):
        b.run("k", df, lambda f: f, lambda: False, BatchLimits(max_rows=1), lambda c, r: None)


def test_batch_settings_are_range_checked():
    assert load_settings(["--batch-max-rows", "32", "--batch-max-delay-ms", "1.5"], env={}).batch_max_rows == 32
    assert load_settings([], env={"EMBER_BATCH_MAX_DELAY_MS": "0"}).batch_max_delay_ms == 0
    for argv in (["--batch-max-rows", "0"], ["--batch-max-delay-ms", "-1"], ["--batch-max-delay-ms", "nan"], ["--batch-max-delay-ms", "5000"]):
        with pytest.raises(SystemExit, match="batch_max"):
            load_settings(argv, env={})
