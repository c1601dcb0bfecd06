"""Validation on the holdout inside the training loop, at a fraction of an epoch and once
at the end; keeps the best weights (selection by the eval metric), writes ``last.ckpt``
(atomically, at most every ``checkpoint_interval_s``) and stops early on patience."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch

from .time_budget import TimeBudget


class Validator(L.Callback):
    def __init__(
        self,
        evaluate: Callable[[], tuple[float, float]],
        *,
        higher_is_better: bool,
        every_steps: int,
        patience: int,
        checkpoint_path: Path,
        checkpoint_interval_s: float,
        budget: TimeBudget,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.evaluate = evaluate
        self.sign = 1.0 if higher_is_better else -1.0
        self.every_steps = max(1, every_steps)
        self.patience = patience
        self.checkpoint_path = checkpoint_path
        self.checkpoint_interval_s = checkpoint_interval_s
        self.budget = budget
        self.emit = emit
        self.best_score: float | None = None
        self.best_loss = float("inf")
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.bad_evals = 0
        self.last_eval_s = 0.0  # duration of the last validation (feeds the time reserve)
        self.last_ckpt_at: float | None = None
        self.validated_step = -1

    def validate(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        t0 = time.monotonic()
        module.eval()
        try:
            s, loss = self.evaluate()
        finally:
            module.train()
        self.last_eval_s = time.monotonic() - t0
        step = trainer.global_step
        self.validated_step = step
        self.history.append({"step": step, "epoch": trainer.current_epoch, "score": s, "loss": loss, "elapsed_s": self.budget.elapsed()})
        # The eval metric selects; on a tie (common for accuracy on a small holdout) the
        # lower validation loss wins.
        improved = self.best_score is None or self.sign * (s - self.best_score) > 0 or (s == self.best_score and loss < self.best_loss)
        if improved:
            self.best_score, self.best_loss, self.best_step, self.bad_evals = s, loss, step, 0
            self.best_state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                trainer.should_stop = True
        self.emit({"kind": "validation", "step": step, "epoch": trainer.current_epoch, "score": s, "best": self.best_score})

    def maybe_checkpoint(self, trainer: L.Trainer) -> None:
        now = self.budget.elapsed()
        if self.last_ckpt_at is not None and now - self.last_ckpt_at < self.checkpoint_interval_s:
            return
        if self.budget.remaining() is not None and self.budget.remaining() < 2 * self.checkpoint_interval_s / 3:
            return  # the run is about to end; its result is the model version, not a checkpoint
        self.last_ckpt_at = now
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
        self.emit({"kind": "checkpoint", "step": trainer.global_step, "path": str(self.checkpoint_path)})

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_steps == 0 and not trainer.should_stop:
            self.validate(trainer, module)
            self.maybe_checkpoint(trainer)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.validated_step != trainer.global_step:
            self.validate(trainer, module)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "best_state": self.best_state or {},
            "history": self.history,
            "bad_evals": self.bad_evals,
            "last_eval_s": self.last_eval_s,
            "last_ckpt_at": self.last_ckpt_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state["best_score"]
        self.best_loss = state["best_loss"]
        self.best_step = state["best_step"]
        self.best_state = state["best_state"] or None
        self.history = list(state["history"])
        self.bad_evals = state["bad_evals"]
        self.last_eval_s = state["last_eval_s"]
        self.last_ckpt_at = None  # a resumed run checkpoints at its first validation
