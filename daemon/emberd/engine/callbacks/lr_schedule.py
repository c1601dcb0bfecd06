"""Warm-up then cosine decay over the run's progress, where progress is the larger of the
step fraction (epochs bound) and the time fraction (time limit). Under a time limit the
learning rate reaches zero as the budget ends, whatever the machine's speed: no budget is
spent on a schedule sized for steps that will never run.

On several ranks the time fraction is rank 0's (each rank's clock differs a little, and
ranks with different learning rates would drift apart): ``now`` is the agreed progress of
the current step, which the linear probe reads too."""

from __future__ import annotations

import math
from typing import Any

import lightning as L

from ..distributed import broadcast_floats
from .time_budget import TimeBudget


class BudgetSchedule(L.Callback):
    def __init__(self, budget: TimeBudget, total_steps: int, warmup: float) -> None:
        self.budget = budget
        self.total_steps = max(1, total_steps)
        self.warmup = warmup
        self.now = 0.0  # progress of the current step, the same on every rank

    def progress(self, step: int) -> float:
        """Fraction of the run done: steps of the epoch bound, or time of the budget."""
        return min(1.0, max(step / self.total_steps, self.budget.fraction() / 0.95))

    def factor(self, p: float) -> float:
        if p < self.warmup:
            return (p + 1e-3) / (self.warmup + 1e-3)
        p = min(1.0, (p - self.warmup) / max(1e-9, 1 - self.warmup))
        return 0.5 * (1 + math.cos(math.pi * p))

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.now = broadcast_floats([self.progress(trainer.global_step)])[0]
        f = self.factor(self.now)
        for opt in trainer.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * f
