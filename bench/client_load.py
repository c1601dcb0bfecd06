"""Closed-loop Predict clients in their own processes, shared by the serving benches.

Clients run in separate interpreters (``spawn``), a few threads each, as real callers do:
clients as threads of the daemon's own process would share its GIL, and the bench would
measure their Python work as the daemon's."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import threading
import time

import pandas as pd

from ember import Client


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def client_proc(address: str, model: str, threads: int, seconds: float, rows: pd.DataFrame, per_call: int, out: mp.Queue) -> None:
    """One client process: ``threads`` closed loops on ``address``; puts (calls, latencies, errors)."""
    lat: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def loop(k: int) -> None:
        with Client(address) as c:
            c.predict(model, rows.iloc[:1])  # the connection is up before the clock starts
            ready.wait()
            i = k
            while not stop.is_set():
                part = rows.iloc[i % len(rows) : i % len(rows) + per_call]
                t0 = time.perf_counter()
                try:
                    c.predict(model, part)
                    lat.append(1000 * (time.perf_counter() - t0))
                except Exception as e:  # noqa: BLE001 - counted: that is the measurement
                    errors.append(repr(e))
                i += threads

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    out.put((len(lat) / (time.perf_counter() - t0), lat, errors[:3], len(errors)))


def load(addresses: list[str], threads: int, seconds: float, rows: pd.DataFrame, per_call: int = 1, model: str = "bench") -> tuple[float, float, float, int]:
    """One client process per address (``threads`` loops each): (rows/s, p50 ms, p99 ms, errors)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=client_proc, args=(a, model, threads, seconds, rows, per_call, out)) for a in addresses]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 180) for _ in procs]
    for p in procs:
        p.join()
    lat = [x for r in results for x in r[1]]
    errors = sum(r[3] for r in results)
    if errors:
        print("errors:", [e for r in results for e in r[2]], file=sys.stderr)
    return sum(r[0] for r in results) * per_call, statistics.median(lat), pct(lat, 0.99), errors
