"""What ``optim.head_init_rows`` buys: the head's exact fit on fewer rows starts training
sooner, but is it as good? Fits MiniLM on 1,000 SST-2 training rows under one time limit,
alternating the row counts (ABAB) over several seeds, in this process; prints, per row
count, the head fit's seconds, its held-out probe loss and the SST-2 dev accuracy.
``--head-only`` (``optim.lr`` 0: steps change no weight) scores the fitted head alone,
which no other load on the machine can change (the steps a budget buys, it can).

    python bench/head_init_rows.py [--rows 512 256] [--seeds 0 1] [--time-limit 60] [--head-only]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from ember_examples import datasets
from emberd.engine import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--head-only", action="store_true", help="optim.lr 0: the fitted head alone is scored")
    args = ap.parse_args()
    extra = {"optim.lr": 0.0} if args.head_only else {}
    train = datasets.sst2("train").sample(n=1000, random_state=0)
    dev = datasets.sst2("dev")
    root = tempfile.mkdtemp(prefix="ember-head-rows-")
    results: dict[int, list[tuple[float, float, float, int]]] = {r: [] for r in args.rows}
    for seed in args.seeds:
        for rows in args.rows:  # A then B, every seed
            events: list[dict] = []
            p = Predictor(label="label", path=f"{root}/r{rows}-s{seed}")
            p.fit(train, time_limit=args.time_limit, seed=seed, hyperparameters={"optim.head_init_rows": rows, **extra}, on_event=events.append)
            head = next(e for e in events if e.get("state") == "head_initialized")
            acc = p.evaluate(dev, "acc")["acc"]
            results[rows].append((head["features_s"] + head["fit_s"], head["heldout_loss"], acc, p.fit_summary["steps"]))
            print(f"seed {seed} head_init_rows {rows:4d}: head fit {head['features_s'] + head['fit_s']:.2f}s, "
                  f"probe held-out loss {head['heldout_loss']:.4f}, {p.fit_summary['steps']} steps, dev acc {acc:.4f}", flush=True)

    what = "the fitted head alone (optim.lr 0)" if args.head_only else f"time_limit {args.time_limit:g}s"
    print(f"\nMiniLM, 1,000 SST-2 rows, {what}, seeds {args.seeds}: median (min-max)")
    print("| head_init_rows | head fit (s) | probe held-out loss | steps | SST-2 dev acc |\n| --- | --- | --- | --- | --- |")
    for rows, rs in results.items():
        def cell(k: int, fmt: str) -> str:
            xs = [r[k] for r in rs]
            return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}-{max(xs):{fmt}})"
        print(f"| {rows} | {cell(0, '.2f')} | {cell(1, '.4f')} | {cell(3, '.0f')} | {cell(2, '.4f')} |")
    base = statistics.median(r[2] for r in results[args.rows[0]])
    for rows in args.rows[1:]:
        print(f"dev acc, {rows} rows - {args.rows[0]} rows: {statistics.median(r[2] for r in results[rows]) - base:+.4f}")


if __name__ == "__main__":
    main()
