"""Budgets kept from the call: ``Fit(time_limit=...)`` through a warm daemon (MiniLM, 1,000
SST-2 training rows), timed from the Fit RPC to the job's SUCCEEDED as the user sees it,
against the budget, with the SST-2 dev accuracy each budget bought. A table and a plot
(bench/out/budget_curve.png). Goal: SUCCEEDED within time_limit + 2 s.

    python bench/budget_curve.py [--budgets 20 60 120]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from ember import Client
from ember.v1 import job_pb2
from ember_examples import datasets
from emberd.server import create_server
from emberd.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=float, nargs="+", default=[20, 60, 120])
    args = ap.parse_args()
    train = datasets.sst2("train").sample(n=1000, random_state=0)
    dev = datasets.sst2("dev")
    d = create_server(Settings(port=0, root=tempfile.mkdtemp(prefix="ember-budget-")))
    c = Client(f"127.0.0.1:{d.port}")
    time.sleep(15)  # the forkserver's imports, as on a daemon that has been up a while
    rows = []
    try:
        for i, budget in enumerate(args.budgets):
            t0 = time.monotonic()
            job = c.wait(c.fit(f"b{i}", train, label="label", time_limit=budget), progress=False)
            wall = time.monotonic() - t0
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
            steps = max((r.event.step for r in c.watch(job.id)), default=0)
            acc = c.evaluate(f"b{i}", dev)["acc"]
            rows.append((budget, wall, steps, acc))
            print(f"budget {budget:.0f}s: SUCCEEDED {wall:.1f}s after the call, {steps} steps, dev acc {acc:.4f}", flush=True)
    finally:
        c.close()
        d.stop(1)
    print("\n| time_limit (s) | Fit RPC to SUCCEEDED (s) | / time_limit | over (s) | steps | SST-2 dev acc |")
    print("| --- | --- | --- | --- | --- | --- |")
    for b, w, s, a in rows:
        print(f"| {b:.0f} | {w:.1f} | {w / b:.3f} | {w - b:+.1f} | {s} | {a:.4f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    os.makedirs("bench/out", exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r[0] for r in rows], [r[3] for r in rows], marker="o")
    ax.axhline(0.5, ls=":", c="gray", label="chance")
    ax.set_xlabel("time_limit (s)")
    ax.set_ylabel("SST-2 dev accuracy")
    ax.set_title("Ember, MiniLM, 1,000 SST-2 rows, 2 CPU cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig("bench/out/budget_curve.png", dpi=120)
    print("plot: bench/out/budget_curve.png")


if __name__ == "__main__":
    main()
