"""Peak memory and rows/s of a batch prediction (``emberd.batch.run``, the job's worker
body) against growing inputs, beside a whole-table ``predict_proba`` on the same rows: the
batch job's memory should stay flat while the table grows (a tabular model, Parquet input).
Each measurement runs in a fresh process (``ru_maxrss`` is a high-water mark); sizes are
alternated over ``--pairs`` rounds and the median and spread printed.

    python bench/batch_predict_memory.py [--rows 20000 200000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    cat = rng.choice(["red", "green", "blue"], size=n)
    return pd.DataFrame({"x": x, "x2": rng.normal(size=n), "color": cat, "label": np.where(x + (cat == "red") > 0.3, "a", "b")})


def measure(mode: str, model_dir: str, data: str, out: str) -> None:
    """One run in this process; prints JSON (rows/s, peak RSS MiB)."""
    import torch

    torch.set_num_threads(1)
    from emberd import batch
    from emberd.engine import Predictor
    from emberd.jobspec import BatchSpec

    t0 = time.monotonic()
    if mode == "batch":
        r = batch.run(BatchSpec(model_dir=model_dir, model_name="m", version=1, data_path=data, with_proba=True,
                                artifacts_dir=out, artifact_id=f"a{os.getpid()}"), lambda e: None)
        rows = r["rows"]
    else:
        df = pd.read_parquet(data)
        rows = len(Predictor.load(model_dir, version=1).predict_proba(df, as_pandas=False))
    dt = time.monotonic() - t0
    print(json.dumps({"rows_per_s": rows / dt, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    from emberd.engine import Predictor

    with tempfile.TemporaryDirectory(prefix="ember-bench-batch-") as tmp:
        model = Path(tmp) / "model"
        Predictor(label="label", path=model, verbosity=0).fit(table(240), time_limit=30, hyperparameters={"optim.max_epochs": 3})
        files = {}
        for n in args.rows:
            files[n] = Path(tmp) / f"t{n}.parquet"
            table(n, seed=1).drop(columns="label").to_parquet(files[n], index=False)
        results: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.pairs):  # ABAB: sizes and modes alternate within each round
            for n in args.rows:
                for mode in ("batch", "whole"):
                    out = subprocess.run([sys.executable, __file__, "--one", mode, str(model), str(files[n]), tmp],
                                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                    results.setdefault((mode, n), []).append(json.loads(out))
                    print(f"  {mode} {n}: {out}", flush=True)
        print(f"{'mode':<8}{'rows':>9}{'peak MiB (median, min-max)':>30}{'rows/s (median, min-max)':>30}")
        for (mode, n), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            mem, speed = [r["peak_mib"] for r in rs], [r["rows_per_s"] for r in rs]
            print(f"{mode:<8}{n:>9}{statistics.median(mem):>14.0f} ({min(mem):.0f}-{max(mem):.0f})"
                  f"{statistics.median(speed):>16.0f} ({min(speed):.0f}-{max(speed):.0f})")
        for mode in ("batch", "whole"):
            lo, hi = (statistics.median(r["peak_mib"] for r in results[(mode, n)]) for n in (min(args.rows), max(args.rows)))
            print(f"{mode}: peak memory at {max(args.rows)} rows / at {min(args.rows)} rows = {hi / lo:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        measure(*sys.argv[2:6])
    else:
        main()
