"""Jobs (training, and batch predictions: ``emberd.batch``): a queue, spawned worker
processes (one per job, at most ``max_concurrent_jobs`` at once), their event logs,
cancel, and reconcile after a restart. A batch prediction's worker that ends without a
result leaves its job FAILED (it has nothing to resume), a training job's INTERRUPTED.

A job's worker reports over a multiprocessing queue; a thread per running job writes each
event to the registry and wakes WatchJob streams. A worker that ends without reporting a
result (killed, out of memory, daemon restart) leaves its job INTERRUPTED, resumable from
its last checkpoint, unless it had already published its version (the version records the
job's id): then the job is SUCCEEDED with that version, whenever the daemon finds out (at
once, or on reconcile after a restart). A job's final state and its final event are
written in one transaction, so WatchJob never ends without that event.

A distributed job (``JobSpec.train.scale``: devices > 1) gets one spawned worker per rank, started
like torchrun starts them (MASTER_ADDR/MASTER_PORT on loopback, WORLD_SIZE, RANK,
LOCAL_RANK, NODE_RANK), so each job is its own torch.distributed group and any number of
them can run one after another in one daemon. Every rank is a process the daemon watches:
if one dies without a result, the others are killed (they would wait for it forever) and
the job is INTERRUPTED; Resume starts the whole group again from the last checkpoint."""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from . import warm
from .engine.faults import fault
from .engine.sources import ReadPolicy
from .jobspec import Launch
from .registry import FINAL_STATES, TRAINING_KINDS, JobRecord, Registry
from .worker import run_job

log = logging.getLogger("emberd.jobs")


@dataclass
class _Running:
    job_id: str
    processes: list[Any]  # one per rank, in rank order
    queue: Any
    cancelled: bool = False
    thread: threading.Thread | None = None

    def kill(self) -> set[int]:
        """Kill the ranks still alive; returns which they were."""
        alive = {rank for rank, p in enumerate(self.processes) if p.is_alive()}
        for rank in alive:
            self.processes[rank].kill()
        return alive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_environments(devices: int) -> list[dict[str, str]]:
    """torchrun's variables for each of ``devices`` ranks on this machine (none for one)."""
    if devices <= 1:
        return [{}]
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(devices),
              "LOCAL_WORLD_SIZE": str(devices), "NODE_RANK": "0", "GROUP_RANK": "0"}
    return [{**common, "RANK": str(r), "LOCAL_RANK": str(r)} for r in range(devices)]


class JobManager:
    def __init__(
        self,
        registry: Registry,
        *,
        max_concurrent: int,
        on_success: Callable[[JobRecord, dict[str, Any]], None],
        published: Callable[[JobRecord], int | None] = lambda job: None,
        on_end: Callable[[JobRecord, str], None] = lambda job, state: None,
        torch_threads: int = 0,
        read_policy: ReadPolicy | None = None,
        start_method: str = "forkserver",
    ) -> None:
        self.registry = registry
        self.max_concurrent = max_concurrent
        self.on_success = on_success
        self.published = published  # the version a job published (recorded and current), if any
        self.on_end = on_end  # as a job ends, with its final state (retention, checkpoint cleanup)
        self.torch_threads = torch_threads
        self.read_policy = read_policy  # the workers read the paths in their data under it
        self.start_method = start_method
        self._ctx = warm.context(start_method)
        self._running: dict[str, _Running] = {}
        self.worker_starts = 0  # worker processes started (one per rank): a metric
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule_loop, name="ember-jobs", daemon=True)

    # ---- life -----------------------------------------------------------------------------
    def start(self) -> None:
        self.reconcile()
        if self.start_method == "forkserver":
            warm.start()
        self._scheduler.start()

    def reconcile(self) -> None:
        """After a restart no worker of ours is alive: a RUNNING (or INTERRUPTED) job that
        published its version is SUCCEEDED with it; the other RUNNING ones are INTERRUPTED."""
        for job in self.registry.jobs_in("RUNNING", "INTERRUPTED"):
            version = self._published_quietly(job)
            if version is not None:
                log.info("job %s published version %d before the daemon stopped: SUCCEEDED", job.id, version)
                self._finish(job.id, "SUCCEEDED", version=version, error="",
                             message="the daemon stopped after this job published its version; recorded on restart")
            elif job.state == "RUNNING":
                self._lost(job, "the daemon stopped while this job ran")

    def mark_published(self, job_id: str, version: int) -> None:
        """A job found to have published ``version`` after it was settled otherwise."""
        self._finish(job_id, "SUCCEEDED", version=version, error="", message=f"this job had published version {version}")

    def stop(self, grace: float = 5.0) -> None:
        """Stop scheduling and kill the workers (their jobs become INTERRUPTED: resumable)."""
        self._stop.set()
        with self._lock:
            running = list(self._running.values())
        for r in running:
            r.kill()
        for r in running:
            if r.thread:
                r.thread.join(grace)

    # ---- submit / cancel --------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def submit(self, job: JobRecord) -> None:
        self._emit(job.id, {"kind": "state", "state": "QUEUED"})
        self._wake()

    def cancel(self, job_id: str) -> JobRecord | None:
        job = self.registry.job(job_id)
        if job is None or job.state in FINAL_STATES:
            return job
        with self._lock:
            r = self._running.get(job_id)
            if r is not None:
                r.cancelled = True
                r.kill()  # checkpoints are atomic: the last whole one stays
        if r is None:
            self._finish(job_id, "CANCELLED", error="cancelled before it started")
        elif r.thread:
            r.thread.join(30)
        return self.registry.job(job_id)

    # ---- events ---------------------------------------------------------------------------
    def _emit(self, job_id: str, event: dict[str, Any]) -> None:
        self.registry.append_event(job_id, event)
        self._wake()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def watch(self, job_id: str, after_seq: int = 0, alive: Callable[[], bool] = lambda: True) -> Iterator[tuple[int, float, dict[str, Any], JobRecord]]:
        """The job's events after ``after_seq``, then live ones, until the job has ended and
        its log is drained (or ``alive()`` turns false: the caller went away)."""
        seq = after_seq
        while alive():
            # the job before its events: a final state is committed with its final event, so
            # events read after seeing that state include it
            job = self.registry.job(job_id)
            assert job is not None
            events = self.registry.events(job_id, seq)
            if events:  # paired with the state as fresh as the newest event
                job = self.registry.job(job_id) or job
            for s, t, e in events:
                seq = s
                yield s, t, e, job
            if not events and job.state in FINAL_STATES:
                return
            if not events:
                with self._changed:
                    self._changed.wait(0.5)

    # ---- scheduling -------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._start_queued()
            except Exception:  # noqa: BLE001 - the scheduler must survive a bad job
                log.exception("scheduler error")
            with self._changed:
                self._changed.wait(0.5)

    def _start_queued(self) -> None:
        with self._lock:
            free = self.max_concurrent - len(self._running)
        if free <= 0:
            return
        for job in self.registry.jobs_in("QUEUED")[:free]:
            self._start(job)

    def _start(self, job: JobRecord) -> None:
        q = self._ctx.Queue()
        # The budget runs from now: the RPC accepted the job (created_at), then it queued
        # for a slot; that wait is reported, not charged. The worker inherits the forkserver's
        # environment, so the daemon's own goes with the launch.
        now = time.time()
        launch = Launch(
            job_id=job.id, torch_threads=self.torch_threads, budget_started=time.monotonic(), daemon_pid=os.getpid(),
            environ=warm.environ(), read_policy=self.read_policy.to_dict() if self.read_policy is not None else None,
        )
        queued_s = max(0.0, now - job.created_at)
        scale = job.spec.train.scale if job.spec.train is not None else None
        envs = rank_environments(int((scale or {}).get("devices", 1)))
        procs = []
        for rank, env in enumerate(envs):
            name = f"ember-job-{job.id[:8]}" + (f"-rank{rank}" if len(envs) > 1 else "")
            procs.append(self._ctx.Process(target=run_job, args=(job.spec, replace(launch, dist_env=env), q), name=name, daemon=True))
            procs[-1].start()
            self.worker_starts += 1
        self.registry.update_job(job.id, state="RUNNING", worker_pid=procs[0].pid, event={"kind": "state", "state": "RUNNING", "queued_s": round(queued_s, 3)})
        self._wake()
        if len(procs) > 1:
            self._emit(job.id, {"kind": "state", "state": "ranks_started", "world_size": len(procs), "pids": [p.pid for p in procs]})
        r = _Running(job.id, procs, q)
        r.thread = threading.Thread(target=self._pump, args=(r,), name=f"ember-pump-{job.id[:8]}", daemon=True)
        with self._lock:
            self._running[job.id] = r
        r.thread.start()

    def _pump(self, r: _Running) -> None:
        """Relay the ranks' reports until all have exited; then settle the job's state."""
        results: dict[int, tuple[str, dict[str, Any]]] = {}
        killed: set[int] = set()  # ranks this thread killed: their silence is not a crash
        while True:
            try:
                rank, kind, payload = r.queue.get(timeout=0.5)
            except queue_mod.Empty:
                alive = [p.is_alive() for p in r.processes]
                if all(alive):
                    continue
                try:  # drain what an exited rank wrote just before exiting
                    rank, kind, payload = r.queue.get(timeout=0.5)
                except (queue_mod.Empty, EOFError, OSError):
                    if not any(p.is_alive() for p in r.processes):
                        break
                    # a rank ended without a result: the others would wait for it forever
                    lost = [i for i, p in enumerate(r.processes) if not p.is_alive() and i not in results]
                    if lost:
                        killed |= r.kill()
                    continue
            except (EOFError, OSError):
                break
            if kind == "event":
                self._emit(r.job_id, payload)
                continue
            results[rank] = (kind, payload)
            if kind == "failed":  # the group cannot finish without this rank
                killed |= r.kill()
        for p in r.processes:
            p.join(5)
        with self._lock:
            self._running.pop(r.job_id, None)
        job = self.registry.job(r.job_id)
        assert job is not None
        lost = [i for i, p in enumerate(r.processes) if i not in results and i not in killed]
        failed = sorted((i, res[1]) for i, res in results.items() if res[0] == "failed")
        done = results.get(0, ("",))[0] == "done"
        published = None if done else self._published_quietly(job)
        if done or published is not None:
            try:
                if done:
                    self.on_success(job, results[0][1])
                fault("publish.recorded")
                self._finish(r.job_id, "SUCCEEDED", version=results[0][1]["version"] if done else published)
            except Exception as e:  # noqa: BLE001
                log.exception("recording job %s", r.job_id)
                self._finish(r.job_id, "FAILED", error=f"the model was trained but could not be recorded: {e}")
        elif r.cancelled:
            kept = "its last checkpoint is kept: Resume continues it" if job.kind in TRAINING_KINDS else "no predictions were kept"
            self._finish(r.job_id, "CANCELLED", error=f"cancelled; {kept}")
        elif lost:
            what = "the worker process" if len(r.processes) == 1 else f"rank {lost[0]} of {len(r.processes)}"
            others = "" if len(r.processes) == 1 else " (the other ranks were stopped)"
            self._lost(job, f"{what} ended without a result (exit code {r.processes[lost[0]].exitcode}){others}")
        elif failed:
            rank, info = failed[0]
            self._finish(r.job_id, "FAILED", error=info["message"], code=info["error"])
            if info.get("traceback"):
                log.error("job %s failed on rank %d:\n%s", r.job_id, rank, info["traceback"])
        else:
            self._lost(job, "the workers ended without a result")
        self._wake()

    def _lost(self, job: JobRecord, why: str) -> None:
        """A job whose workers ended without a result: a training job is INTERRUPTED (Resume
        continues it); a batch prediction, which has nothing to resume, FAILED."""
        if job.kind in TRAINING_KINDS:
            self._finish(job.id, "INTERRUPTED", error=f"{why}; Resume continues it from its last checkpoint")
        else:
            self._finish(job.id, "FAILED", error=f"{why}; it wrote no predictions: run BatchPredict again")

    def _published_quietly(self, job: JobRecord) -> int | None:
        try:
            return self.published(job)
        except Exception:  # noqa: BLE001 - settle as a lost worker; reconcile looks again on restart
            log.exception("looking for job %s's version", job.id)
            return None

    def _finish(
        self, job_id: str, state: str, *, error: str | None = None, version: int | None = None, code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The job's final state and its final event, in one transaction."""
        fields: dict[str, Any] = {"state": state}
        if error is not None:
            fields["error"] = error
        if version is not None:
            fields["version"] = version
        event: dict[str, Any] = {"kind": "state", "state": state}
        if error or message:
            event["message"] = error or message
        if code:
            event["error"] = code
        if version is not None:
            event["version"] = version
        job = self.registry.job(job_id)
        if job is not None and state in FINAL_STATES:
            try:  # before the state: a client that sees the job ended sees its cleanup done
                self.on_end(job, state)
            except Exception:  # noqa: BLE001 - cleanup must not change the job's outcome
                log.exception("cleaning up after job %s", job_id)
        self.registry.update_job(job_id, event=event, **fields)
        self._wake()
