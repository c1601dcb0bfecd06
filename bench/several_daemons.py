"""Predict throughput with one and with two daemons sharing one PostgreSQL registry and one
root (issue 18), and the registry's operation latency on SQLite against PostgreSQL.

Throughput: a real PostgreSQL (initdb in a temp folder), daemons A and B as separate
processes on one registry and one root; a model is fitted through A. Then the same client
load (``--procs`` client processes x ``--threads`` threads, closed loop, ``--rows`` rows per
Predict) is sent either all to A ("1 daemon") or half to A and half to B ("2 daemons"),
alternated for ``--pairs`` pairs; medians over the pairs with their spread, ratio 2/1.
Both daemons and the clients share this machine's cores: on 2 cores the ratio says how much
one daemon's own overhead (a Python process: the GIL, gRPC) limits it, not what two machines
would give.

Registry latency: the operations a job and a Predict make (create a job, append an event and
change its state in one transaction, claim it, publish a version, read a model and its
versions), timed on a SQLite file and on PostgreSQL over loopback, alternated per pair.

    python bench/several_daemons.py [--model tabular|minilm] [--pairs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client_load import load

from ember import Client
from ember.client import _healthy
from ember.v1 import job_pb2
from ember_examples import datasets
from ember_examples.postgres import Postgres


def start_daemon(root: Path, url: str) -> tuple[subprocess.Popen, str]:
    """An emberd process on a free port with this root and registry; its address once healthy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root.parent / f"emberd-{port}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "emberd", "--port", str(port), "--root", str(root), "--registry-url", url],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not _healthy(f"127.0.0.1:{port}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"emberd did not start; see {log.name}")
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port}"


def throughput(pg: Postgres, model: str, pairs: int, seconds: float, procs: int, threads: int, rows_per_call: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="ember-bench-daemons-"))
    root, url = base / "root", pg.database()
    root.mkdir()
    started = [start_daemon(root, url) for _ in range(2)]
    daemons = [p for p, _ in started]
    a, b = (addr for _, addr in started)
    try:
        if model == "minilm":
            train, rows = datasets.sst2("train").sample(n=600, random_state=0), datasets.sst2("dev")[["sentence"]]
            limit, label = 20, "label"
        else:
            train, rows = datasets.tabular(400), datasets.tabular(200, seed=1).drop(columns=["label"])
            limit, label = 10, "label"
        with Client(a) as c:
            job = c.wait(c.fit("bench", train, label=label, time_limit=limit), progress=False)
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
        with Client(b) as c:  # published through A, served by B
            c.predict("bench", rows.iloc[:1])
        load([a], 2, 2.0, rows, rows_per_call)  # warm-up
        got: dict[str, list[tuple[float, float, float, int]]] = {"1 daemon": [], "2 daemons": []}
        for _ in range(pairs):
            got["1 daemon"].append(load([a] * procs, threads, seconds, rows, rows_per_call))
            got["2 daemons"].append(load([a, b] * (procs // 2), threads, seconds, rows, rows_per_call))
        print(f"\n### Predict through 1 and 2 daemons on one PostgreSQL ({model}, {procs} client processes x {threads} threads, "
              f"{rows_per_call} row(s) per call, {seconds:.0f} s per cell, {pairs} pairs alternated)\n")
        print("| measure | 1 daemon (median, min-max) | 2 daemons (median, min-max) | ratio 2/1 |\n| --- | --- | --- | --- |")
        for k, what in enumerate(("rows/s", "p50 ms", "p99 ms", "errors")):
            one, two = ([r[k] for r in got[s]] for s in ("1 daemon", "2 daemons"))
            m1, m2 = statistics.median(one), statistics.median(two)
            ratio = f"{m2 / m1:.2f}" if m1 else "-"
            print(f"| {what} | {m1:.1f} ({min(one):.1f}-{max(one):.1f}) | {m2:.1f} ({min(two):.1f}-{max(two):.1f}) | {ratio} |")
    finally:
        for proc in daemons:
            proc.terminate()
        for proc in daemons:
            proc.wait(60)


def registry_latency(pg: Postgres, pairs: int, n: int) -> None:
    from emberd.jobspec import JobSpec
    from emberd.registry import Registry

    spec = JobSpec.from_dict({"model_dir": "/r/models/m", "model_name": "m", "version": 1, "data_path": "/d.csv", "with_proba": False,
                              "artifacts_dir": "/r/artifacts", "artifact_id": "b" * 32}, kind="BATCH_PREDICT")
    stores = {"SQLite": lambda: Registry(Path(tempfile.mkdtemp(prefix="ember-bench-reg-")) / "registry.sqlite"),
              "PostgreSQL": lambda: Registry(pg.database())}
    ops = ("create job", "event + state (1 tx)", "claim job", "publish version", "read model + versions")
    got: dict[tuple[str, str], list[float]] = {}
    for _ in range(pairs):
        for store, open_ in stores.items():
            r = open_()
            times: dict[str, list[float]] = {op: [] for op in ops}
            for i in range(n):
                steps = (
                    lambda: r.create_job(f"j{i}", f"m{i % 10}", spec),
                    lambda: r.update_job(f"j{i}", worker_pid=1, event={"kind": "state", "state": "RUNNING"}),
                    lambda: r.claim_job(f"j{i}", "bench", 30),
                    lambda: r.add_version(f"m{i % 10}", i, val_score=0.5, job_id=f"j{i}"),
                    lambda: (r.model(f"m{i % 10}"), r.versions(f"m{i % 10}")),
                )
                for op, step in zip(ops, steps):
                    t0 = time.perf_counter()
                    step()
                    times[op].append(1e3 * (time.perf_counter() - t0))
            for op in ops:
                got.setdefault((store, op), []).append(statistics.median(times[op]))
            r.close()
    print(f"\n### Registry operation latency, ms (median of {n} per pair; median over {pairs} pairs, min-max)\n")
    print("| operation | SQLite | PostgreSQL (loopback) | ratio PG/SQLite |\n| --- | --- | --- | --- |")
    for op in ops:
        s, p = got[("SQLite", op)], got[("PostgreSQL", op)]
        print(f"| {op} | {statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f}) | {statistics.median(p):.3f} ({min(p):.3f}-{max(p):.3f}) "
              f"| {statistics.median(p) / statistics.median(s):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("tabular", "minilm"), default="tabular")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--procs", type=int, default=2, help="client processes (even)")
    ap.add_argument("--threads", type=int, default=8, help="closed-loop clients per process")
    ap.add_argument("--rows", type=int, default=1, help="rows per Predict")
    ap.add_argument("--registry-ops", type=int, default=200)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    pg = Postgres()
    try:
        registry_latency(pg, args.pairs, args.registry_ops)
        if not args.skip_throughput:
            throughput(pg, args.model, args.pairs, args.seconds, args.procs, args.threads, args.rows)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
