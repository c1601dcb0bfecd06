"""Warm Predict latency through the daemon against the same call in process, one row,
p50 over 100 calls; then 8 concurrent clients calling Predict while a Fit runs (errors and
latency). Goal: daemon p50 under 50 ms on 2 CPU cores.

Then dynamic batching: 1, 4 and 16 concurrent clients (1 row per Predict, closed loop) on
the same model (clients in their own processes, up to 8 threads each: ``client_load``),
with batching on (the defaults) and off (``batch_max_delay_ms=0``: each
slice alone under the model's lock, as before batching), the same daemon root restarted
for each side, alternated on/off for ``--pairs`` pairs; the table gives medians over the
pairs, their spread (min-max) and the ratio on/off. Goal: 16 clients' rows/s >= 4x off's,
1-client p50 not worse.

    python bench/daemon_latency.py [--batching-only] [--pairs 3] [--seconds 4] [--clients 1 4 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

from client_load import load, pct

from ember import Client
from ember.v1 import job_pb2
from ember_examples import datasets
from emberd.engine import Predictor
from emberd.server import create_server
from emberd.settings import Settings


def batching(root: str, rows, pairs: int, seconds: float, counts=(1, 4, 16)) -> None:
    """On/off, alternated; one table of medians over the pairs."""
    sides = {"on": {}, "off": {"batch_max_delay_ms": 0.0}}
    got: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    batch_calls = {}
    for _ in range(pairs):
        for side, extra in sides.items():
            d = create_server(Settings(port=0, root=root, **extra))
            with Client(f"127.0.0.1:{d.port}") as c:
                c.predict("sst2", rows.head(1))  # load into the warm cache
            address = f"127.0.0.1:{d.port}"
            load([address], 4, 1.0, rows, model="sst2")  # warm up
            for n in counts:
                procs = -(-n // 8)  # clients in their own processes, at most 8 threads each
                if n % procs:
                    raise SystemExit(f"--clients {n}: give a count that {procs} processes share evenly")
                rps, p50, p99, errors = load([address] * procs, n // procs, seconds, rows, model="sst2")
                assert errors == 0, f"{errors} errors ({side}, {n} clients)"
                got.setdefault((side, n), []).append((rps, p50, p99))
            text = d.metrics.text().decode()
            batch_calls[side] = [line for line in text.splitlines() if line.startswith(("ember_batch_calls_count", "ember_batch_calls_sum"))]
            d.stop(0)

    def med(side: str, n: int, k: int) -> tuple[float, float, float]:
        xs = [r[k] for r in got[(side, n)]]
        return statistics.median(xs), min(xs), max(xs)

    print("\n| clients | measure | batching off (median, min-max) | batching on (median, min-max) | ratio on/off |\n| --- | --- | --- | --- | --- |")
    for n in counts:
        for k, what in enumerate(("rows/s", "p50 ms", "p99 ms")):
            off, on = med("off", n, k), med("on", n, k)
            print(f"| {n} | {what} | {off[0]:.1f} ({off[1]:.1f}-{off[2]:.1f}) | {on[0]:.1f} ({on[1]:.1f}-{on[2]:.1f}) | {on[0] / off[0]:.2f} |")
    print(f"\n{pairs} pairs (off, on alternated), {seconds:.0f} s per cell, 1 row per Predict; last daemon's batches: {batch_calls}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batching-only", action="store_true", help="skip the latency and during-a-fit measurements")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients of each batching row")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ember-bench-daemon-")
    d = create_server(Settings(port=0, root=root))
    c = Client(f"127.0.0.1:{d.port}")
    train = datasets.sst2("train").sample(n=600, random_state=0)
    dev = datasets.sst2("dev")
    job = c.wait(c.fit("sst2", train, label="label", time_limit=20), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    if args.batching_only:
        c.close()
        d.stop(1)
        batching(root, dev[["sentence"]], args.pairs, args.seconds, tuple(args.clients))
        return
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
    batching(root, dev[["sentence"]], args.pairs, args.seconds, tuple(args.clients))


if __name__ == "__main__":
    main()
