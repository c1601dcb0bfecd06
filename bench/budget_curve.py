"""SST-2 dev accuracy reached against seconds of budget (``fit(time_limit=...)`` on 1,000
training rows with the default MiniLM), as a table and a plot (bench/out/budget_curve.png).

    python bench/budget_curve.py [--budgets 15 30 60 90]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from ember_examples import datasets
from emberd.engine import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=float, nargs="+", default=[15, 30, 60, 90])
    args = ap.parse_args()
    train = datasets.sst2("train").sample(n=1000, random_state=0)
    dev = datasets.sst2("dev")
    rows = []
    for budget in args.budgets:
        path = tempfile.mkdtemp(prefix="ember-budget-")
        try:
            t0 = time.monotonic()
            p = Predictor(label="label", path=path, verbosity=0).fit(train, time_limit=budget)
            fit_s = time.monotonic() - t0
            t0 = time.monotonic()
            acc = p.evaluate(dev)["acc"]
            rows.append((budget, fit_s, p.fit_summary["steps"], acc, time.monotonic() - t0))
        finally:
            shutil.rmtree(path, ignore_errors=True)
        print(f"budget {budget:.0f}s: fit {fit_s:.1f}s, {rows[-1][2]} steps, dev acc {acc:.4f}", flush=True)
    print("\n| time_limit (s) | fit took (s) | steps | SST-2 dev acc | predict 872 rows (s) |\n| --- | --- | --- | --- | --- |")
    for b, f, s, a, e in rows:
        print(f"| {b:.0f} | {f:.1f} | {s} | {a:.4f} | {e:.1f} |")
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
