"""Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): for the first fraction of
the run the pretrained backbones are frozen and only the heads (and fusion MLP) train.

Frozen backbones need no backward pass, so those steps are about three times cheaper; the
head starts fine-tuning already aligned with the pretrained features, which distorts them
less (better out-of-distribution accuracy, less forgetting)."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn

from .lr_schedule import BudgetSchedule


class LinearProbe(L.Callback):
    def __init__(self, backbones: list[nn.Module], schedule: BudgetSchedule, fraction: float) -> None:
        self.params = [p for b in backbones for p in b.parameters() if p.requires_grad]
        self.schedule = schedule
        self.fraction = fraction
        self.frozen = False

    def _set(self, frozen: bool) -> None:
        if frozen != self.frozen:
            for p in self.params:
                p.requires_grad_(not frozen)
            self.frozen = frozen

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._set(self.schedule.now < self.fraction)  # BudgetSchedule runs first: this step's progress

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(False)
