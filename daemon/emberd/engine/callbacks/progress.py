"""Progress events (step, epoch, loss, samples/s, ETA) at most once a second, to a sink:
the daemon relays them to WatchJob; in process they go to the log. On several ranks the
samples are counted for the whole group (each rank's batch times the ranks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L

from .time_budget import TimeBudget


class Progress(L.Callback):
    def __init__(self, emit: Callable[[dict[str, Any]], None], budget: TimeBudget, world: int = 1) -> None:
        self.emit = emit
        self.budget = budget
        self.world = world
        self._last = 0.0
        self.samples = 0
        self._t0 = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.samples += len(batch["rows"]) * self.world
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        loss = outputs["loss"].item() if isinstance(outputs, dict) else float(outputs)
        remaining = self.budget.remaining()
        self.emit(
            {
                "kind": "progress",
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "loss": loss,
                "samples_per_s": self.samples / max(1e-9, now - self._t0),
                "elapsed_s": self.budget.elapsed(),
                "eta_s": max(0.0, remaining) if remaining is not None else None,
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
            }
        )
