"""Ember's training loop against a bare PyTorch loop on the same model, the same batches
(same rows, same padding) and the same optimizer, on SST-2: samples/s and their ratio.

Ember's figure is end to end inside ``Predictor.fit`` (Lightning, callbacks, progress,
validation at half epochs, checkpoint writes); the bare loop does forward, backward and
AdamW only. Goal: ratio >= 0.9.

    python bench/train_throughput.py [--rows 1000] [--epochs 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
import torch

from ember_examples import datasets
from emberd.engine import Predictor
from emberd.engine.config import Config
from emberd.engine.data import infer_schema
from emberd.engine.features import LengthBuckets
from emberd.engine.model_store import TrainedModel
from emberd.engine.models import build_net
from emberd.engine.training import LitModel


def bare_loop(df, cfg: Config, epochs: int, seed: int) -> float:
    schema = infer_schema(df, "label")
    net = build_net(schema, cfg, pretrained=True)
    from transformers import AutoTokenizer

    from emberd.engine.models.text import resolve_text_checkpoint

    tok = AutoTokenizer.from_pretrained(resolve_text_checkpoint(cfg.text.checkpoint_name))
    model = TrainedModel(schema, cfg, net, tok)
    enc = model.encode(df, with_labels=True, skip_bad_images=False)
    collate = model.collator(enc, train=True)
    net.encoders["text"].backbone.embeddings.word_embeddings.weight.requires_grad_(False)
    net.train()
    opt = LitModel(net, schema.problem_type, cfg).configure_optimizers()
    sampler = LengthBuckets(enc.lengths("siamese"), cfg.env.batch_size, shuffle=True, seed=seed)
    n, t0 = 0, time.monotonic()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for rows in sampler:
            batch = collate(rows)
            loss = torch.nn.functional.cross_entropy(net(batch), batch["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            n += len(rows)
    return n / (time.monotonic() - t0)


def ember_loop(df, epochs: int, seed: int) -> float:
    path = tempfile.mkdtemp(prefix="ember-bench-")
    try:
        # holdout_frac tiny: Ember's batches are then the bare loop's rows (minus one)
        p = Predictor(label="label", path=path, verbosity=0).fit(
            df, hyperparameters={"optim.max_epochs": epochs, "env.holdout_frac": 0.001}, seed=seed
        )
        return p.fit_summary["samples_per_s"]
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    df = datasets.sst2("train").sample(n=args.rows, random_state=0).reset_index(drop=True)
    cfg = Config()
    ours, bare = [], []
    for r in range(args.repeats):  # interleaved, so machine load hits both alike
        bare.append(bare_loop(df, cfg, args.epochs, seed=r))
        ours.append(ember_loop(df, args.epochs, seed=r))
    print(f"\nSST-2, {args.rows} rows, {args.epochs} epoch(s), batch {cfg.env.batch_size}, MiniLM, {torch.get_num_threads()} threads")
    print("| loop | samples/s (median) | runs |\n| --- | --- | --- |")
    print(f"| bare PyTorch | {np.median(bare):.1f} | {', '.join(f'{x:.1f}' for x in bare)} |")
    print(f"| Ember (Predictor.fit) | {np.median(ours):.1f} | {', '.join(f'{x:.1f}' for x in ours)} |")
    print(f"| **ratio Ember / bare** | **{np.median(ours) / np.median(bare):.3f}** | goal >= 0.9 |")


if __name__ == "__main__":
    main()
