"""What a user waits for from the Fit RPC: cold workers (``--worker-start spawn``: a fresh
interpreter importing torch, Lightning and transformers per job) against warm ones (forked
from the daemon's forkserver, which imported them once), alternated (ABAB) on two daemons in
one process, several pairs, medians and spread:

- Fit RPC -> the job's RUNNING event (queue and process start),
- Fit RPC -> its first training step (the worker's imports, data, model),
- Fit RPC -> SUCCEEDED, against ``time_limit`` (the budget counts from the job's start),
- Export RPC -> its bundle (the export runs in a child too).

    python bench/job_start.py [--pairs 3] [--time-limit 20] [--model tabular|minilm]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from ember import Client
from ember.v1 import job_pb2
from ember_examples import datasets
from emberd.server import create_server
from emberd.settings import Settings

TABULAR_HP = {"optim.max_epochs": 1000, "env.batch_size": 8}


def frame(model: str):
    if model == "minilm":
        return datasets.sst2("train").sample(n=1000, random_state=0), {}
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    return pd.DataFrame({"x": x, "x2": rng.normal(size=4000), "label": np.where(x > 0, "a", "b")}), TABULAR_HP


def one_fit(c: Client, name: str, train, hp: dict, time_limit: float) -> tuple[float, float, float]:
    t0 = time.monotonic()
    job = c.fit(name, train, label="label", time_limit=time_limit, hyperparameters=hp)
    running = first_step = None
    for r in c.watch(job.id):
        e = r.event
        if running is None and e.state == job_pb2.JOB_STATE_RUNNING:
            running = time.monotonic() - t0
        if first_step is None and e.kind == job_pb2.JOB_EVENT_KIND_PROGRESS and e.step >= 1:
            first_step = time.monotonic() - t0
    done = time.monotonic() - t0
    assert r.job.state == job_pb2.JOB_STATE_SUCCEEDED, r.job.error
    return running or float("nan"), first_step or float("nan"), done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--model", choices=["tabular", "minilm"], default="tabular")
    args = ap.parse_args()
    train, hp = frame(args.model)
    daemons = {m: create_server(Settings(port=0, root=tempfile.mkdtemp(prefix=f"ember-start-{m}-"), worker_start=m))
               for m in ("spawn", "forkserver")}
    clients = {m: Client(f"127.0.0.1:{d.port}") for m, d in daemons.items()}
    time.sleep(15)  # let the forkserver finish its imports, as on a daemon that has been up a while
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in daemons}
    try:
        for i in range(args.pairs):
            for m in ("spawn", "forkserver"):  # A then B, every pair
                r = one_fit(clients[m], f"m{i}", train, hp, args.time_limit)
                results[m].append(r)
                print(f"pair {i} {m:10s}: RUNNING after {r[0]:.2f}s, first step after {r[1]:.2f}s, SUCCEEDED after {r[2]:.1f}s", flush=True)
        exports: dict[str, list[float]] = {m: [] for m in daemons}
        for i in range(args.pairs):
            for m in ("spawn", "forkserver"):
                t0 = time.monotonic()
                clients[m].export(f"m{i}")
                exports[m].append(time.monotonic() - t0)
                print(f"export {i} {m:10s}: {exports[m][-1]:.2f}s", flush=True)
    finally:
        for c in clients.values():
            c.close()
        for d in daemons.values():
            d.stop(1)

    def cell(m: str, k: int) -> str:
        xs = [r[k] for r in results[m]]
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

    print(f"\n{args.model}, time_limit {args.time_limit:g}s, {args.pairs} ABAB pairs: median (min-max) seconds from the Fit RPC")
    print("| workers | to RUNNING | to first step | to SUCCEEDED | SUCCEEDED / time_limit |\n| --- | --- | --- | --- | --- |")
    for m in ("spawn", "forkserver"):
        ratio = statistics.median(r[2] for r in results[m]) / args.time_limit
        print(f"| {'cold (spawn)' if m == 'spawn' else 'warm (forkserver)'} | {cell(m, 0)} | {cell(m, 1)} | {cell(m, 2)} | {ratio:.2f} |")
    print("\n| workers | Export RPC (s) |\n| --- | --- |")
    for m in ("spawn", "forkserver"):
        xs = exports[m]
        print(f"| {'cold (spawn)' if m == 'spawn' else 'warm (forkserver)'} | {statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f}) |")
    print(f"export: warm / cold = {statistics.median(exports['forkserver']) / statistics.median(exports['spawn']):.2f}")
    cold = statistics.median(r[1] for r in results["spawn"])
    warm = statistics.median(r[1] for r in results["forkserver"])
    print(f"\nfirst step: warm / cold = {warm / cold:.2f}")


if __name__ == "__main__":
    main()
