"""One detector training run with Lightning and Ember's callbacks (time budget, schedule,
validation by COCO mAP with top-k soup, safetensors checkpoints, progress): the mmdet
detector's own loss in a LightningModule, not mmengine's Runner, so that resume, time
limits, checkpoints and progress events behave as for every other problem type."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..callbacks import BudgetSchedule, Progress
from ..training import RunResult, budget_and_validator, run_lightning
from .data import DetectionSet
from .evaluation import coco_map
from .model import DetectionModel

__all__ = ["train_detector"]


class LitDetector(L.LightningModule):
    def __init__(self, model: DetectionModel, *, backbone_trained: bool) -> None:
        super().__init__()
        self.net = model.net
        self.cfg = model.cfg
        self.backbone_trained = backbone_trained

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        data = self.net.data_preprocessor({"inputs": batch["inputs"], "data_samples": batch["data_samples"]}, True)
        loss, _ = self.net.parse_losses(self.net.loss(data["inputs"], data["data_samples"]))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW; neck and head at ``lr * lr_mult``; the backbone at ``lr`` when it starts
        from trained weights (a continued fit or a transfer), else with the head; no weight
        decay on biases and norms."""
        o = self.cfg.optim
        groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            slow = self.backbone_trained and name.startswith("backbone.")
            lr = o.lr if slow else o.lr * o.lr_mult
            groups.setdefault((lr, p.ndim < 2), []).append(p)
        return torch.optim.AdamW(
            [
                {"params": ps, "lr": lr, "base_lr": lr, "weight_decay": 0.0 if no_decay else o.weight_decay}
                for (lr, no_decay), ps in sorted(groups.items())
            ],
            lr=o.lr,
        )


def train_detector(
    model: DetectionModel,
    *,
    train_set: DetectionSet,
    val_set: DetectionSet,
    continued: bool,
    time_limit: float | None,
    started: float,
    checkpoint_path: Path,
    resume_from: Path | None,
    seed: int,
    emit: Callable[[dict[str, Any]], None],
) -> RunResult:
    """Train ``model.net`` in place; on return it holds the selected (averaged) weights."""
    cfg = model.cfg
    L.seed_everything(seed, workers=False, verbose=False)
    net = model.net
    net.train()
    bs = cfg.env.batch_size
    rng = np.random.default_rng(seed)
    hflip = "hflip" in cfg.detection.train_transforms

    def collate(rows: list[int]) -> dict[str, Any]:
        return model.batch(train_set, rows, flip=(rng.random(len(rows)) < 0.5) if hflip else None)

    g = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(train_set.n), generator=g), bs, drop_last=False)
    loader = torch.utils.data.DataLoader(range(train_set.n), batch_sampler=sampler, collate_fn=collate, num_workers=0)
    targets = model.targets(val_set)

    def evaluate() -> tuple[float, float]:
        return coco_map(model.detect(val_set), targets, len(model.schema.classes))["map"], 0.0

    t0 = time.monotonic()
    first = evaluate()  # a continued fit's parent: its score at step 0 (not validated again)
    val_estimate = time.monotonic() - t0  # an untrained head keeps more boxes: an upper bound
    net.train()
    budget, validator = budget_and_validator(
        cfg, evaluate, True, val_estimate=val_estimate, time_limit=time_limit, started=started,
        steps_per_epoch=len(sampler), net=net, checkpoint_path=checkpoint_path, emit=emit,
        start=first if continued and resume_from is None else None,
    )
    progress = Progress(emit, budget)
    schedule = BudgetSchedule(budget, len(sampler) * cfg.optim.max_epochs, cfg.optim.warmup_steps)
    lit = LitDetector(model, backbone_trained=continued or model.backbone_from_training)
    result = run_lightning(
        lit, loader, cfg, budget=budget, validator=validator, progress=progress, callbacks=[budget, schedule, validator, progress],
        time_limit=time_limit, resume_from=resume_from, gradient_clip_val=10.0,
    )
    net.eval()
    return result
