"""Ember's training loop against a bare PyTorch loop on the same model, the same batches
(same rows, same padding), the same optimizer (Ember's AdamW groups), the same learning-rate
schedule (warm-up then cosine over the epochs) and the same precision (fp32), on SST-2:
samples/s and their ratio.

Ember's figure is end to end inside ``Predictor.fit``'s Lightning run (callbacks, progress,
validation at half epochs, checkpoint writes); the bare loop does forward, backward, the
schedule and AdamW only. The two alternate (bare, Ember, bare, Ember, ...) after one warm-up
of each, so machine load hits both alike; the table gives each side's median and spread and
the median of the per-pair ratios. Goal: ratio >= 0.9.

    python bench/train_throughput.py [--rows 600] [--epochs 1] [--pairs 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time

import numpy as np
import torch

from ember_examples import datasets
from emberd.engine import Predictor
from emberd.engine.callbacks import BudgetSchedule
from emberd.engine.config import Config
from emberd.engine.data import infer_schema
from emberd.engine.features import LengthBuckets
from emberd.engine.model_store import TrainedModel
from emberd.engine.models import build_net
from emberd.engine.models.text import load_tokenizer
from emberd.engine.training import LitModel

HOLDOUT = {"env.holdout_frac": 0.001}  # one validation row: Ember's batches are the bare loop's rows (minus one)


def bare_loop(df, cfg: Config, epochs: int, seed: int) -> float:
    schema = infer_schema(df, "label")
    torch.manual_seed(seed)
    net = build_net(schema, cfg, pretrained=True)
    model = TrainedModel(schema, cfg, net, load_tokenizer(cfg))
    enc = model.encode(df, with_labels=True, skip_bad_images=False)
    collate = model.collator(enc, train=True, seed=seed)
    net.encoders["text"].backbone.embeddings.word_embeddings.weight.requires_grad_(False)
    net.train()
    opt = LitModel(net, schema.problem_type, cfg).configure_optimizers()
    sampler = LengthBuckets(enc.lengths(cfg.text.text_pair_mode), cfg.env.batch_size, shuffle=True, seed=seed)
    total = len(sampler) * epochs
    schedule = BudgetSchedule(None, total, cfg.optim.warmup_steps)  # type: ignore[arg-type]
    n, step, t0 = 0, 0, time.monotonic()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for rows in sampler:
            f = schedule.factor(step / total)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * f
            batch = collate(rows)
            loss = torch.nn.functional.cross_entropy(net(batch), batch["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            n, step = n + len(rows), step + 1
    return n / (time.monotonic() - t0)


def ember_loop(df, epochs: int, seed: int) -> float:
    path = tempfile.mkdtemp(prefix="ember-bench-")
    try:
        p = Predictor(label="label", path=path, verbosity=0).fit(
            df, hyperparameters={"optim.max_epochs": epochs, **HOLDOUT}, seed=seed
        )
        return p.fit_summary["samples_per_s"]
    finally:
        shutil.rmtree(path, ignore_errors=True)


def spread(xs: list[float]) -> str:
    return f"{min(xs):.1f}-{max(xs):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also profile one Ember fit (cProfile, top 25 by cumulative time)")
    args = ap.parse_args()
    df = datasets.sst2("train").sample(n=args.rows, random_state=0).reset_index(drop=True)
    cfg = Config()
    warm = df.head(96)
    bare_loop(warm, cfg, 1, seed=0)  # warm-up of both sides: imports, allocator, kernels
    ember_loop(warm, 1, seed=0)
    ours, bare = [], []
    for r in range(args.pairs):
        bare.append(bare_loop(df, cfg, args.epochs, seed=r))
        ours.append(ember_loop(df, args.epochs, seed=r))
        print(f"pair {r}: bare {bare[-1]:.1f}, Ember {ours[-1]:.1f} samples/s", flush=True)
    ratios = [o / b for o, b in zip(ours, bare)]
    print(f"\nSST-2, {args.rows} rows, {args.epochs} epoch(s), batch {cfg.env.batch_size}, MiniLM, {torch.get_num_threads()} threads, "
          f"{args.pairs} alternating pairs")
    print("| loop | samples/s (median) | spread | runs |\n| --- | --- | --- | --- |")
    print(f"| bare PyTorch | {np.median(bare):.1f} | {spread(bare)} | {', '.join(f'{x:.1f}' for x in bare)} |")
    print(f"| Ember (Predictor.fit) | {np.median(ours):.1f} | {spread(ours)} | {', '.join(f'{x:.1f}' for x in ours)} |")
    print(f"| **ratio Ember / bare (median of pairs)** | **{np.median(ratios):.3f}** | {min(ratios):.3f}-{max(ratios):.3f} | goal >= 0.9 |")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(ember_loop, df, args.epochs, 0)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
