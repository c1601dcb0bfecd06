"""One training run with Lightning: the LightningModule, the optimizer groups, and the
trainer wired with Ember's callbacks and pickle-free checkpoint storage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from torch import nn

from .callbacks import BudgetSchedule, LinearProbe, Progress, TimeBudget, Validator
from .checkpoint_io import SafeCheckpointIO
from .config import Config
from .data import Schema
from .distributed import Scale, broadcast_floats
from .features import Collator, Encoded, LengthBuckets
from .head_init import fit_linear_head
from .inference import raw_outputs, to_predictions
from .metrics import higher_is_better, score
from .models import MultimodalNet


class LitModel(L.LightningModule):
    def __init__(self, net: MultimodalNet, problem_type: str, cfg: Config, lr_scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.regression = problem_type == "regression"
        self.cfg = cfg
        self.lr_scale = lr_scale  # a continued fit's optim.continued_lr_scale

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.net(batch)
        if self.regression:
            return nn.functional.mse_loss(out[:, 0], batch["labels"])
        return nn.functional.cross_entropy(out, batch["labels"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW; heads at ``lr * lr_mult``; a transformer backbone's layers at
        ``lr * lr_decay ** depth`` counted from the top (layer-wise decay, as AutoMM), so the
        lower layers stay near their pretrained weights; no decay on biases and norms. All of
        them times ``lr_scale`` (a continued fit's smaller steps)."""
        o = self.cfg.optim
        head = {id(p) for p in self.net.head_parameters()}
        depth = _layer_depths(self.net)
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.ndim < 2 or "norm" in name.lower()
            lr = self.lr_scale * (o.lr * o.lr_mult if id(p) in head else o.lr * o.lr_decay ** depth.get(name, 0))
            groups.setdefault((lr, no_decay), []).append(p)
        param_groups = [
            {"params": params, "lr": lr, "base_lr": lr, "weight_decay": 0.0 if no_decay else o.weight_decay}
            for (lr, no_decay), params in sorted(groups.items())
        ]
        return torch.optim.AdamW(param_groups, lr=o.lr, betas=(0.9, 0.999), eps=1e-6, fused=True)


def _layer_depths(net: MultimodalNet) -> dict[str, int]:
    """Distance from the top layer of the text backbone for each of its parameters
    (``encoder.layer.{i}``; embeddings are below layer 0). Other parameters: 0."""
    if "text" not in net.encoders:
        return {}
    import re

    prefix = "encoders.text.backbone."
    names = [n for n, _ in net.named_parameters() if n.startswith(prefix)]
    layer = re.compile(r"\.layers?\.(\d+)\.")
    ids = [int(m.group(1)) for n in names if (m := layer.search(n[len(prefix) - 1 :]))]
    if not ids:
        return {}
    top = max(ids)
    out = {}
    for n in names:
        m = layer.search(n[len(prefix) - 1 :])
        if m:
            out[n] = top - int(m.group(1))
        elif "embeddings" in n:
            out[n] = top + 1
    return out


def validation_loss(schema: Schema, raw: np.ndarray, labels: torch.Tensor) -> float:
    """The training objective on the holdout (cross-entropy, or MSE of standardized targets)."""
    out = torch.from_numpy(raw)
    if schema.problem_type == "regression":
        return float(nn.functional.mse_loss(out[:, 0], labels.float()))
    return float(nn.functional.cross_entropy(out, labels))


@dataclass
class RunResult:
    best_score: float  # validation score of the final weights (left loaded in the net)
    averaged_steps: list[int]  # the checkpoints (by step) averaged into them
    history: list[dict[str, float]]
    steps: int
    epochs: int
    elapsed_s: float
    stopped_by: str
    samples_per_s: float = 0.0


def train(
    net: MultimodalNet,
    schema: Schema,
    cfg: Config,
    *,
    train_enc: Encoded,
    val_enc: Encoded,
    make_collator: Callable[..., Collator],
    metric: str,
    time_limit: float | None,
    started: float,
    checkpoint_path: Path,
    resume_from: Path | None,
    fresh_head: bool,
    seed: int,
    emit: Callable[[dict[str, Any]], None],
    scale: Scale = Scale(),
    rank: int = 0,
) -> RunResult:
    """Train ``net`` in place; on return it holds the selected (averaged) weights.

    On several processes (``scale``) this runs on every rank: each trains on its own shard
    of the batches (``env.batch_size`` is the global batch, split over the ranks), rank 0
    validates and broadcasts the scores, so every rank keeps, averages and ends with the
    same weights. Only rank 0 emits events and writes checkpoints."""
    L.seed_everything(seed, workers=False, verbose=False)
    net.train()  # pretrained backbones load in eval mode; train with their dropout on
    if cfg.text and "text" in net.encoders and cfg.text.freeze_word_embeddings:
        emb = getattr(net.encoders["text"].backbone, "embeddings", None)
        if emb is not None and hasattr(emb, "word_embeddings"):
            emb.word_embeddings.weight.requires_grad_(False)
    pair_mode = cfg.text.text_pair_mode
    world = scale.world_size
    bs = -(-cfg.env.batch_size // world)
    train_lengths = train_enc.lengths(pair_mode)
    sampler = LengthBuckets(train_lengths, bs, shuffle=True, seed=seed, rank=rank, world=world)
    loader = torch.utils.data.DataLoader(
        range(train_enc.n), batch_sampler=sampler, collate_fn=make_collator(train_enc, train=True), num_workers=0
    )
    val_collator = make_collator(val_enc, train=False)
    val_lengths = val_enc.lengths(pair_mode)
    y_val = val_enc.labels.numpy()
    if schema.problem_type == "regression":
        y_val = y_val.astype(np.float64) * schema.label_std + schema.label_mean

    def evaluate() -> tuple[float, float]:
        # Rank 0 scores the whole holdout; the others take its numbers (same weights on all).
        s, loss = math.nan, math.nan
        if rank == 0:
            raw = raw_outputs(net, val_collator, val_lengths, cfg.env.eval_batch_size)
            s, loss = score(metric, y_val, to_predictions(schema, raw)), validation_loss(schema, raw, val_enc.labels)
        s, loss = broadcast_floats([s, loss])
        return s, loss

    start = None
    if not fresh_head and resume_from is None:
        # A continued fit scores its parent on the holdout once: that measures what a
        # validation costs, and the parent joins the candidates at step 0 with this score.
        t_eval = time.monotonic()
        start = evaluate()
        val_estimate = time.monotonic() - t_eval
        emit({"kind": "state", "state": "parent_validated", "score": start[0], "seconds": val_estimate})
    # On several ranks only rank 0 fits the head: DDP starts every rank from rank 0's weights.
    elif resume_from is None and fresh_head and net.fusion is None and cfg.optim.head_init_rows > 0 and rank == 0:
        # The head's fit runs the backbone over its rows first: that forward pass also
        # measures what a validation costs, until the first real validation measures it.
        probe = fit_linear_head(
            net, train_enc, make_collator(train_enc, train=False), train_lengths,
            regression=schema.problem_type == "regression", rows=cfg.optim.head_init_rows,
            batch_size=cfg.env.eval_batch_size, seed=seed,
        )
        val_estimate = probe["forward_s_per_row"] * val_enc.n
        emit({"kind": "state", "state": "head_initialized", **probe})
    else:
        # What one validation costs, from a probe forward (the second of two: the first pays
        # warm-up), until the first real validation measures it.
        probe_rows = np.arange(min(32, val_enc.n))
        for _ in range(2):
            t_probe = time.monotonic()
            raw_outputs(net, val_collator, val_lengths[probe_rows], cfg.env.eval_batch_size)
            t_probe = time.monotonic() - t_probe
        val_estimate = t_probe / len(probe_rows) * val_enc.n
    steps_per_epoch = len(sampler)
    budget, validator = budget_and_validator(
        cfg, evaluate, higher_is_better(metric), val_estimate=val_estimate, time_limit=time_limit, started=started,
        steps_per_epoch=steps_per_epoch, net=net, checkpoint_path=checkpoint_path, emit=emit, start=start,
    )
    progress = Progress(emit, budget, world)
    schedule = BudgetSchedule(budget, steps_per_epoch * cfg.optim.max_epochs, cfg.optim.warmup_steps)
    callbacks: list[L.Callback] = [budget, schedule, validator, progress]
    backbones = [net.encoders[k] for k in ("text", "image") if k in net.encoders]
    if cfg.optim.linear_probe_frac > 0 and backbones and net.fusion is not None:
        callbacks.insert(2, LinearProbe(backbones, schedule, cfg.optim.linear_probe_frac))
    lit = LitModel(net, schema.problem_type, cfg, lr_scale=1.0 if fresh_head else cfg.optim.continued_lr_scale)
    return run_lightning(
        lit, loader, cfg, budget=budget, validator=validator, progress=progress, callbacks=callbacks,
        time_limit=time_limit, resume_from=resume_from, scale=scale,
    )


def budget_and_validator(
    cfg: Config,
    evaluate: Callable[[], tuple[float, float]],
    higher_is_better: bool,
    *,
    val_estimate: float,
    time_limit: float | None,
    started: float,
    steps_per_epoch: int,
    net: nn.Module,
    checkpoint_path: Path,
    emit: Callable[[dict[str, Any]], None],
    start: tuple[float, float] | None = None,
) -> tuple[TimeBudget, Validator]:
    """The run's time budget (reserving the final validation, the soup's evaluations and
    writing the model) and its validator (every ``val_check_interval`` of an epoch;
    ``start``: the starting weights' validation, a candidate at step 0, for a continued fit)."""
    validator: Validator

    def reserve() -> float:
        # final validation (measured, or the estimate), the soup's evaluations, writing the model
        ev = validator.last_eval_s or val_estimate
        # the soup re-validates averages with the kept checkpoints (at most top_k - 1)
        soup_evals = min(cfg.optim.top_k, len(validator.top) + 1) - 1 if cfg.optim.top_k_average_method != "best" else 0
        return ev * (1 + soup_evals) + 1.5

    budget = TimeBudget(time_limit, started, reserve)
    validator = Validator(
        evaluate,
        higher_is_better=higher_is_better,
        every_steps=max(1, math.ceil(steps_per_epoch * cfg.optim.val_check_interval)),
        patience=cfg.optim.patience,
        top_k=cfg.optim.top_k,
        frozen={n for n, p in net.named_parameters() if not p.requires_grad},
        checkpoint_path=checkpoint_path,
        checkpoint_interval_s=cfg.optim.checkpoint_interval_s,
        budget=budget,
        emit=emit,
        start=start,
    )
    return budget, validator


def run_lightning(
    lit: L.LightningModule,
    loader: torch.utils.data.DataLoader,
    cfg: Config,
    *,
    budget: TimeBudget,
    validator: Validator,
    progress: Progress,
    callbacks: list[L.Callback],
    time_limit: float | None,
    resume_from: Path | None,
    scale: Scale = Scale(),
    **trainer_options: Any,
) -> RunResult:
    """Fit ``lit`` with Ember's callbacks and pickle-free checkpoints on ``scale``'s
    processes, then load the selected (soup) weights into ``lit.net``."""
    trainer = L.Trainer(
        **scale.trainer_args(),
        max_epochs=cfg.optim.max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        plugins=[AsyncCheckpointIO(SafeCheckpointIO())],  # checkpoints are written while training goes on
        callbacks=callbacks,
        **trainer_options,
    )
    t0 = time.monotonic()
    trainer.fit(lit, train_dataloaders=loader, ckpt_path=str(resume_from) if resume_from else None)
    train_s = time.monotonic() - t0
    assert validator.best is not None
    stopped_by = (
        "time_limit" if budget.out_of_time() or (time_limit and budget.elapsed() > time_limit * 0.8)
        else "patience" if validator.bad_evals >= cfg.optim.patience
        else "max_epochs"
    )
    final_score, averaged = validator.soup(lit, cfg.optim.top_k_average_method)
    lit.net.cpu()
    return RunResult(
        best_score=final_score,
        averaged_steps=averaged,
        history=validator.history,
        steps=trainer.global_step,
        epochs=trainer.current_epoch,
        elapsed_s=budget.elapsed(),
        stopped_by=stopped_by,
        samples_per_s=progress.samples / max(1e-9, train_s),
    )
