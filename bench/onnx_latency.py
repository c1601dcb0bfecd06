"""onnxruntime against torch eager on the SST-2 model: latency at batch 1 and batch 32.

Fits MiniLM on SST-2 (1,000 rows, ``--time-limit`` s), exports it, then times, on the same
real dev rows and the same thread count:
- the network alone: the exported graph in onnxruntime vs the same module in torch eager
  (inference mode), fed identical tensors;
- rows to labels: ``ember.onnx.OnnxPredictor.predict`` (tokenizer + onnxruntime) vs the
  engine's ``Predictor.predict`` (tokenizer + collation + torch).
Prints medians and the ratio torch / onnxruntime (> 1: onnxruntime faster; goal >= 1).

    python bench/onnx_latency.py [--time-limit 30] [--threads 2] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()

    import onnxruntime as ort

    from ember.onnx import OnnxPredictor
    from ember_examples import datasets
    from emberd.engine import Predictor
    from emberd.engine.export import _Graph

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="ember-bench-onnx-"))
    dev = datasets.sst2("dev")
    p = Predictor(label="label", path=work / "model", verbosity=0)
    p.fit(datasets.sst2("train").sample(n=1000, random_state=0), time_limit=args.time_limit)
    bundle = Path(p.export_onnx(dev.head(256), work / "bundle")).parent

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(bundle / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    runner = OnnxPredictor(bundle, threads=args.threads)
    graph = _Graph(p._model).eval()
    rows_by_batch = {1: dev.iloc[[0]], 32: dev.iloc[:32]}

    print(f"SST-2 MiniLM, {args.threads} thread(s), median of {args.repeats} (ms)")
    print(f"{'what':<28}{'batch':>6}{'torch':>10}{'onnxrt':>10}{'torch/ort':>11}")
    for bs, rows in rows_by_batch.items():
        tokens = runner._tokens(rows.reset_index(drop=True))
        feeds = runner._collate_text(tokens, np.arange(len(rows)))
        xs = tuple(torch.from_numpy(feeds[n]) for n in ("input_ids", "attention_mask", "token_type_ids"))
        with torch.inference_mode():
            t_torch = median_ms(lambda: graph(*xs), args.repeats)
        t_ort = median_ms(lambda: sess.run(["logits"], feeds), args.repeats)
        print(f"{'network':<28}{bs:>6}{t_torch:>10.2f}{t_ort:>10.2f}{t_torch / t_ort:>11.2f}")
        t_torch = median_ms(lambda: p.predict(rows), args.repeats)
        t_ort = median_ms(lambda: runner.predict(rows), args.repeats)
        print(f"{'rows -> labels':<28}{bs:>6}{t_torch:>10.2f}{t_ort:>10.2f}{t_torch / t_ort:>11.2f}")


if __name__ == "__main__":
    main()
