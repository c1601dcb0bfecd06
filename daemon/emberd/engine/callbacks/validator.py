"""Validation on the holdout inside the training loop (at a fraction of an epoch, and once
at the end): keeps the top-k weights by the eval metric (ties: lower validation loss),
writes ``last.ckpt`` atomically at most every ``checkpoint_interval_s`` (in the background:
the ``checkpoint`` event comes once the file is whole), stops early on
patience, and at the end averages the top-k greedily (AutoMM's greedy soup: a checkpoint
joins the average only if the average scores at least as well).

A continued fit scores the weights it starts from once, before training (``start``: that
validation also sizes the time budget's reserve); they join the candidates at step 0 like
any checkpoint, without another validation: the result never validates worse than the
parent version, and the soup can average the new weights with the parent's (as WiSE-FT
does).

On several ranks every rank runs this callback: the scores come from rank 0 (see
``training.train``), so all ranks keep the same snapshots and take the same decisions;
whether to checkpoint is rank 0's call, and Lightning writes the file on rank 0 only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from ..distributed import broadcast_floats, from_rank0
from ..faults import fault
from .time_budget import TimeBudget

Evaluate = Callable[[], tuple[float, float]]


class Validator(L.Callback):
    def __init__(
        self,
        evaluate: Evaluate,
        *,
        higher_is_better: bool,
        every_steps: int,
        patience: int,
        top_k: int,
        frozen: set[str],
        checkpoint_path: Path,
        checkpoint_interval_s: float,
        budget: TimeBudget,
        emit: Callable[[dict[str, Any]], None],
        start: tuple[float, float] | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.start = start  # the starting weights' (score, loss) on rank 0, for a continued fit
        self.sign = 1.0 if higher_is_better else -1.0
        self.every_steps = max(1, every_steps)
        self.patience = patience
        self.top_k = max(1, top_k)
        self.frozen = frozen  # state keys that never change (not copied into snapshots)
        self.checkpoint_path = checkpoint_path
        self.checkpoint_interval_s = checkpoint_interval_s
        self.budget = budget
        self.emit = emit
        self.top: list[dict[str, Any]] = []  # best first: score, loss, step, state
        self.history: list[dict[str, float]] = []
        self.bad_evals = 0
        self.last_eval_s = 0.0  # duration of the last validation (feeds the time reserve)
        self.last_ckpt_at: float | None = None
        self.validated_step = -1
        self.writing = threading.Event()  # a checkpoint is being written (by the checkpoint IO's thread)

    def rank(self, score: float, loss: float) -> tuple[float, float]:
        return (self.sign * score, -loss)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.top[0] if self.top else None

    def _timed_eval(self, module: L.LightningModule) -> tuple[float, float]:
        t0 = time.monotonic()
        module.eval()
        try:
            return self.evaluate()
        finally:
            module.train()
            self.last_eval_s = time.monotonic() - t0

    def validate(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.record(trainer, module, *self._timed_eval(module))

    def record(self, trainer: L.Trainer, module: L.LightningModule, s: float, loss: float) -> None:
        """Enter the current weights' validation (``s``, ``loss``) among the candidates."""
        step = trainer.global_step
        self.validated_step = step
        self.history.append({"step": step, "epoch": trainer.current_epoch, "score": s, "loss": loss, "elapsed_s": self.budget.elapsed()})
        entry = {"score": s, "loss": loss, "step": step}
        if len(self.top) < self.top_k or self.rank(s, loss) > self.rank(self.top[-1]["score"], self.top[-1]["loss"]):
            entry["state"] = {k: v.detach().clone() for k, v in module.net.state_dict().items() if k not in self.frozen}
            self.top = sorted([*self.top, entry], key=lambda e: self.rank(e["score"], e["loss"]), reverse=True)[: self.top_k]
        if self.top[0] is entry:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                trainer.should_stop = True
        self.emit({"kind": "validation", "step": step, "epoch": trainer.current_epoch, "score": s, "best": self.top[0]["score"]})

    def maybe_checkpoint(self, trainer: L.Trainer) -> None:
        now = self.budget.elapsed()
        remaining = self.budget.remaining()
        due = (self.last_ckpt_at is None or now - self.last_ckpt_at >= self.checkpoint_interval_s) and not (
            # the run is about to end; its result is the model version, not a checkpoint
            remaining is not None and remaining < 2 * self.checkpoint_interval_s / 3
        ) and not self.writing.is_set()  # the last one is still being written: the next validation tries again
        if not from_rank0(due):
            return
        self.last_ckpt_at = now
        step = trainer.global_step

        def written() -> None:  # on the writer thread, once the file is whole
            fault("checkpoint.written")
            self.emit({"kind": "checkpoint", "step": step, "path": str(self.checkpoint_path)})
            self.writing.clear()

        if trainer.is_global_zero:
            self.writing.set()
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False, storage_options={"on_written": written})

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_steps == 0 and not trainer.should_stop:
            self.validate(trainer, module)
            self.maybe_checkpoint(trainer)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.start is not None and trainer.global_step == 0 and not self.history:  # not on a resume
            self.record(trainer, module, *broadcast_floats(list(self.start)))  # measured on rank 0 before the fit

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.validated_step != trainer.global_step:
            self.validate(trainer, module)

    # ---- the result ---------------------------------------------------------------------
    def soup(self, module: L.LightningModule, method: str) -> tuple[float, list[int]]:
        """Load the final weights into ``module.net``: the best checkpoint ("best"), the
        average of the top-k ("uniform_soup"), or a greedy average ("greedy_soup").
        Returns their validation score and the steps averaged."""
        net = module.net
        base = net.state_dict()

        def load(entries: list[dict[str, Any]]) -> None:
            state = {}
            for k, v in base.items():
                if k in self.frozen:
                    state[k] = v
                elif v.is_floating_point():
                    state[k] = sum(e["state"][k] for e in entries) / len(entries)
                else:
                    state[k] = entries[0]["state"][k]
            net.load_state_dict(state)

        best = self.top[0]
        chosen = [best]
        score = best["score"]
        if method == "uniform_soup" and len(self.top) > 1:
            chosen = list(self.top)
            load(chosen)
            score, _ = self._timed_eval(module)
        elif method == "greedy_soup":
            rank = self.rank(best["score"], best["loss"])
            for cand in self.top[1:]:
                load([*chosen, cand])
                s, loss = self._timed_eval(module)
                if self.rank(s, loss) >= rank:
                    chosen, rank, score = [*chosen, cand], self.rank(s, loss), s
        load(chosen)
        return score, [e["step"] for e in chosen]

    def state_dict(self) -> dict[str, Any]:
        return {
            "top": self.top,
            "history": self.history,
            "bad_evals": self.bad_evals,
            "last_eval_s": self.last_eval_s,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.top = list(state["top"])
        self.history = list(state["history"])
        self.bad_evals = state["bad_evals"]
        self.last_eval_s = state["last_eval_s"]
        self.last_ckpt_at = None  # a resumed run checkpoints at its first validation
