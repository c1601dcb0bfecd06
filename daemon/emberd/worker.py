"""A job's worker process: forked from the daemon's forkserver (a process that imported
torch, Lightning and transformers once and never ran a gRPC thread; see ``emberd.warm``),
or spawned (``--worker-start spawn``); never forked from the gRPC server itself. It runs
one engine fit (or a batch prediction, ``emberd.batch``) and reports over a queue. It dies with the daemon
(``warm.die_with_daemon``), so a restarted daemon never races an orphan for a model's folder.

A distributed job has one worker per rank, each started with torchrun's environment
variables (``Launch.dist_env``: MASTER_ADDR/PORT, WORLD_SIZE, RANK, LOCAL_RANK, ...), so
Lightning joins them into one DDP group and launches nothing itself. Every message on the
queue is ``(rank, kind, payload)``; rank 0 speaks for the job, and every rank ends with a
``rank_finished`` event (its rank, the group's size, a digest of its final weights).

``python -m emberd.worker SPEC.json`` runs the same fit as one rank of a group that
torchrun or SLURM started (several machines); rank 0 prints events as JSON lines."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

from .jobspec import JobSpec, JobSpecError, Launch


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def run_job(spec: JobSpec, launch: Launch, queue: Any) -> None:
    """Entry point of the worker process (a module-level function, importable by spawn)."""
    from .warm import adopt, die_with_daemon

    die_with_daemon(launch.daemon_pid)

    env = dict(launch.environ or os.environ)  # the daemon's as of the job's start (a fork of the forkserver has its own)
    env.update(launch.dist_env)  # before torch reads it: this process's place in the group
    env["EMBER_WORKER_OF"] = str(launch.daemon_pid or os.getppid())  # a crash point armed here takes the daemon too
    adopt(env)
    rank = int(os.environ.get("RANK", "0"))
    from .logs import configure_worker

    configure_worker(launch.job_id, rank)  # the daemon's log format, warnings and up, third-party noise out
    from .engine.sources import ReadPolicy, set_read_policy

    set_read_policy(ReadPolicy.from_dict(launch.read_policy))  # the daemon's: image paths in the data stay confined
    if launch.torch_threads:
        import torch

        torch.set_num_threads(launch.torch_threads)
    from .engine import EmberError

    def emit(event: dict[str, Any]) -> None:
        queue.put((rank, "event", _json_safe(event)))

    try:
        if spec.batch is not None:
            from .batch import run

            queue.put((rank, "done", _json_safe(run(spec.batch, emit))))
            return
        p = fit(spec, emit, launch)
        emit({"kind": "state", "state": "rank_finished", **p.fit_summary["distributed"]})
        queue.put((rank, "done", _json_safe({"version": p.version, "summary": p.fit_summary})))
    except EmberError as e:
        queue.put((rank, "failed", {"error": type(e).__name__, "message": str(e)}))
    except BaseException as e:  # noqa: BLE001 - report everything; the daemon decides the state
        queue.put((rank, "failed", {"error": "Internal", "message": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}))
    finally:
        queue.close()
        queue.join_thread()


def fit(spec: JobSpec, emit: Any, launch: Launch | None = None) -> Any:
    """One rank's part of the job ``spec`` (a fit, continued fit, transfer or resume);
    ``launch``: the daemon's (job id, budget start), none for ``python -m emberd.worker``."""
    from .engine import Predictor
    from .engine.data import load_table
    from .engine.distributed import Scale

    t, launch = spec.training, launch or Launch()
    if t.train_path is None:
        raise JobSpecError(f"a {spec.kind} job needs train_path (this one was rebuilt from disk without its data)", "train_path")
    train = load_table(t.train_path, what="train_data")
    tuning = load_table(t.tuning_path, what="tuning_data") if t.tuning_path else None
    if spec.kind == "RESUME":
        scale = Scale.from_dict(t.scale).to_hyperparameters() if t.scale else None
        return Predictor.load(t.model_dir, resume=True).fit(
            train, tuning_data=tuning, hyperparameters=scale, on_event=emit, job_id=launch.job_id, started_at=launch.budget_started
        )
    # decided by the daemon (the ranks must agree, and rank 0 writes predictor.json for a new model)
    if t.continued:
        p = Predictor.load(t.model_dir)
        if t.problem_type:
            p.problem_type = t.problem_type
    else:
        p = Predictor(
            label=t.label,
            problem_type=t.problem_type or None,
            eval_metric=t.eval_metric or None,
            path=t.model_dir,
        )
    return p.fit(
        train,
        tuning_data=tuning,
        time_limit=t.time_limit or None,
        hyperparameters=t.hyperparameters,
        seed=t.seed,
        column_types=t.column_types or None,
        on_event=emit,
        job_id=launch.job_id,
        started_at=launch.budget_started,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m emberd.worker SPEC.json``: one rank of a group that torchrun or SLURM
    started (every rank runs this with the same spec). SPEC.json holds the job's spec as the
    daemon stores it (``JobSpec.to_json``) with its kind: kind, model_dir, train_path (and
    tuning_path), label, time_limit, hyperparameters (with env.devices and env.num_nodes
    matching the launcher), seed, continued. Rank 0 prints the job's events as JSON lines;
    every rank prints its ``rank_finished`` report."""
    import json

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        with open(args[0]) as f:
            spec = JobSpec.from_json(f.read())
    except (OSError, JobSpecError) as e:
        print(f"{args[0]}: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(_json_safe(event)), flush=True)

    p = fit(spec, emit if rank == 0 else lambda e: None)
    emit({"kind": "state", "state": "rank_finished", **p.fit_summary["distributed"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
