"""A continued fit against the first fit it continues, on MiniLM and SST-2: a first fit on
1,000 rows under a time limit, then a continued fit under the same limit on 1,000 new rows.

Printed as a table: optimizer steps of each (and their ratio: goal >= 0.8, the continued
fit's extra work, scoring its parent, must not eat the budget), validations run, seconds to
the first training step, the whole fit's seconds, and SST-2 dev accuracy of the parent and
the child (goal: child >= parent). ``--seeds`` repeats the pair with other seeds and data.

    python bench/continued_fit.py [--time-limit 60] [--rows 1000] [--seeds 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from ember_examples import datasets
from emberd.engine import Predictor


class Timeline:
    """The fit's events with their time since the fit began."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, e: dict[str, Any]) -> None:
        self.events.append((time.monotonic() - self.t0, e))

    def first_step_s(self) -> float:
        return next((t for t, e in self.events if e["kind"] == "progress"), float("nan"))

    def validations(self) -> int:
        return sum(e["kind"] == "validation" for _, e in self.events)


def fit(p: Predictor, df, time_limit: float, seed: int, dev) -> dict[str, Any]:
    tl = Timeline()
    p.fit(df, time_limit=time_limit, seed=seed, on_event=tl)
    s = p.fit_summary
    return {"steps": s["steps"], "validations": tl.validations(), "first_step_s": tl.first_step_s(),
            "fit_s": s["fit_seconds"], "val": s["val_score"], "dev": p.evaluate(dev)["acc"],
            "kept_parent": s.get("kept_parent", False)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    train, dev = datasets.sst2("train"), datasets.sst2("dev")
    runs = []
    for seed in range(args.seeds):
        rows = train.sample(n=2 * args.rows, random_state=seed).reset_index(drop=True)
        path = tempfile.mkdtemp(prefix="ember-continued-")
        try:
            first = fit(Predictor(label="label", eval_metric="acc", path=path, verbosity=0), rows.iloc[: args.rows], args.time_limit, seed, dev)
            child = fit(Predictor.load(path), rows.iloc[args.rows :], args.time_limit, seed, dev)
        finally:
            shutil.rmtree(path, ignore_errors=True)
        runs.append((first, child))
        print(f"seed {seed}: first {first}\n        continued {child}", flush=True)
    print(f"\nSST-2, MiniLM, time_limit {args.time_limit:g}s, {args.rows} rows then {args.rows} new rows, {len(runs)} seed(s)")
    print("| seed | fit | steps | validations | first step at (s) | fit (s) | holdout score | dev acc |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed, (first, child) in enumerate(runs):
        for name, r in (("first", first), ("continued", child)):
            print(f"| {seed} | {name} | {r['steps']} | {r['validations']} | {r['first_step_s']:.1f} | {r['fit_s']:.1f} | {r['val']:.3f} | {r['dev']:.4f} |")
    ratios = [c["steps"] / max(1, f["steps"]) for f, c in runs]
    gains = [c["dev"] - f["dev"] for f, c in runs]
    print("\n| measure | median | runs | goal |\n| --- | --- | --- | --- |")
    print(f"| steps continued / first | {np.median(ratios):.2f} | {', '.join(f'{x:.2f}' for x in ratios)} | >= 0.80 |")
    print(f"| dev acc child - parent | {np.median(gains):+.4f} | {', '.join(f'{x:+.4f}' for x in gains)} | >= 0 |")
    print(f"| child kept the parent's weights | {sum(c['kept_parent'] for _, c in runs)} of {len(runs)} | | |")


if __name__ == "__main__":
    main()
