"""The fit's wall-clock budget, kept across a crash and resume.

``elapsed`` counts everything since ``fit()`` was called (preprocessing, training,
validation, checkpoint writes), plus what the interrupted run had spent before its last
checkpoint. Training stops when the time left would not cover one more step, the final
validation and writing the model. On several ranks rank 0's clock decides for all of them,
so every rank stops after the same step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L

from ..distributed import from_rank0


class TimeBudget(L.Callback):
    def __init__(self, limit_s: float | None, started: float, reserve_s: Callable[[], float]) -> None:
        self.limit_s = limit_s
        self.started = started  # time.monotonic() when this process's fit() began
        self.prior_s = 0.0  # spent by earlier (interrupted) attempts of this run
        self.reserve_s = reserve_s
        self.step_s: float | None = None  # moving average of one training step
        self._t_batch = 0.0
        self._batches = 0

    def elapsed(self) -> float:
        return self.prior_s + time.monotonic() - self.started

    def fraction(self) -> float:
        return 0.0 if not self.limit_s else min(1.0, self.elapsed() / self.limit_s)

    def remaining(self) -> float | None:
        return None if not self.limit_s else self.limit_s - self.elapsed()

    def out_of_time(self) -> bool:
        if not self.limit_s:
            return False
        return self.elapsed() + (self.step_s or 0.0) + self.reserve_s() >= self.limit_s

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._t_batch = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        dt = time.monotonic() - self._t_batch
        self._batches += 1
        if self._batches > 2:  # the first steps pay one-off warm-up costs: not a step's time
            self.step_s = dt if self.step_s is None else 0.8 * self.step_s + 0.2 * dt
        if from_rank0(self.out_of_time()):
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prior_s = float(state["elapsed_s"])
