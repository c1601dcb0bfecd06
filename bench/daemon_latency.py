"""Warm Predict latency through the daemon against the same call in process, one row,
p50 over 100 calls; then 8 concurrent clients calling Predict while a Fit runs (errors and
latency). Goal: daemon p50 under 50 ms on 2 CPU cores.

    python bench/daemon_latency.py
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time

from ember import Client
from ember.v1 import job_pb2
from ember_examples import datasets
from emberd.engine import Predictor
from emberd.server import create_server
from emberd.settings import Settings


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    root = tempfile.mkdtemp(prefix="ember-bench-daemon-")
    d = create_server(Settings(port=0, root=root))
    c = Client(f"127.0.0.1:{d.port}")
    train = datasets.sst2("train").sample(n=600, random_state=0)
    dev = datasets.sst2("dev")
    job = c.wait(c.fit("sst2", train, label="label", time_limit=20), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    row = dev.head(1)[["sentence"]]
    c.predict("sst2", row)  # load into the warm cache
    daemon_ms = []
    for _ in range(100):
        t0 = time.perf_counter()
        c.predict("sst2", row)
        daemon_ms.append(1000 * (time.perf_counter() - t0))
    local = Predictor.load(f"{root}/models/sst2")
    local.predict(row)
    local_ms = []
    for _ in range(100):
        t0 = time.perf_counter()
        local.predict(row)
        local_ms.append(1000 * (time.perf_counter() - t0))

    # 8 clients predicting while a fit trains in a worker
    fit = c.fit("sst2-b", train, label="label", time_limit=30)
    errors, lat = [], []
    stop = threading.Event()

    def hammer() -> None:
        with Client(f"127.0.0.1:{d.port}") as cc:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    cc.predict("sst2", dev.sample(n=4)[["sentence"]])
                    lat.append(1000 * (time.perf_counter() - t0))
                except Exception as e:  # noqa: BLE001 - counted, that is the measurement
                    errors.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    done = c.wait(fit, progress=False)
    stop.set()
    for t in threads:
        t.join()
    print("\n| measurement | p50 ms | p95 ms | calls | errors |\n| --- | --- | --- | --- | --- |")
    print(f"| in-process Predictor.predict, 1 row | {statistics.median(local_ms):.1f} | {pct(local_ms, .95):.1f} | 100 | 0 |")
    print(f"| daemon Predict (warm), 1 row | {statistics.median(daemon_ms):.1f} | {pct(daemon_ms, .95):.1f} | 100 | 0 |")
    print(f"| daemon Predict, 4 rows, 8 clients during a Fit | {statistics.median(lat):.1f} | {pct(lat, .95):.1f} | {len(lat)} | {len(errors)} |")
    print(f"| ratio daemon / in-process (p50, 1 row) | {statistics.median(daemon_ms) / statistics.median(local_ms):.2f} | | | |")
    print(f"\nthe concurrent Fit ended {job_pb2.JobState.Name(done.state)}; cache: {c.stats()}")
    c.close()
    d.stop(1)


if __name__ == "__main__":
    main()
