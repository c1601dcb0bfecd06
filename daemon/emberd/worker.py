"""A training job's worker process: started with the ``spawn`` method (never forked from
the gRPC server), it runs one engine fit and reports over a queue. It dies with the daemon
(``PR_SET_PDEATHSIG``), so a restarted daemon never races an orphan for a model's folder."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import traceback
from typing import Any

KINDS = ("FIT", "RESUME", "TRANSFER")


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the daemon's reconcile still marks the job INTERRUPTED
        pass


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def run_job(spec: dict[str, Any], queue: Any) -> None:
    """Entry point of the worker process (a module-level function, importable by spawn)."""
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s job {spec['job_id'][:8]} %(name)s: %(message)s")
    if spec.get("torch_threads"):
        import torch

        torch.set_num_threads(int(spec["torch_threads"]))
    from .engine import EmberError, Predictor
    from .engine.data import load_table

    def emit(event: dict[str, Any]) -> None:
        queue.put(("event", _json_safe(event)))

    try:
        train = load_table(spec["train_path"], what="train_data")
        tuning = load_table(spec["tuning_path"], what="tuning_data") if spec.get("tuning_path") else None
        if spec["kind"] == "RESUME":
            p = Predictor.load(spec["model_dir"], resume=True)
            p.fit(train, tuning_data=tuning, on_event=emit)
        else:
            if os.path.exists(os.path.join(spec["model_dir"], "predictor.json")) and spec["kind"] == "FIT":
                p = Predictor.load(spec["model_dir"])
                if spec.get("problem_type"):
                    p.problem_type = spec["problem_type"]
            else:
                p = Predictor(
                    label=spec["label"],
                    problem_type=spec.get("problem_type") or None,
                    eval_metric=spec.get("eval_metric") or None,
                    path=spec["model_dir"],
                )
            p.fit(
                train,
                tuning_data=tuning,
                time_limit=spec.get("time_limit") or None,
                hyperparameters=spec.get("hyperparameters") or {},
                seed=int(spec.get("seed") or 0),
                column_types=spec.get("column_types") or None,
                on_event=emit,
            )
        queue.put(("done", _json_safe({"version": p.version, "summary": p.fit_summary})))
    except EmberError as e:
        queue.put(("failed", {"error": type(e).__name__, "message": str(e)}))
    except BaseException as e:  # noqa: BLE001 - report everything; the daemon decides the state
        queue.put(("failed", {"error": "Internal", "message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}))
    finally:
        queue.close()
        queue.join_thread()
