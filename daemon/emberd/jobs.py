"""Training jobs: a queue, spawned worker processes (one per job, at most
``max_concurrent_jobs`` at once), their event logs, cancel, and reconcile after a restart.

A job's worker reports over a multiprocessing queue; a thread per running job writes each
event to the registry and wakes WatchJob streams. A worker that ends without reporting a
result (killed, out of memory, daemon restart) leaves its job INTERRUPTED, resumable from
its last checkpoint."""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue as queue_mod
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .registry import FINAL_STATES, JobRow, Registry
from .worker import run_job

log = logging.getLogger("emberd.jobs")

_CTX = mp.get_context("spawn")


@dataclass
class _Running:
    job_id: str
    process: Any
    queue: Any
    cancelled: bool = False
    thread: threading.Thread | None = None


class JobManager:
    def __init__(
        self,
        registry: Registry,
        *,
        max_concurrent: int,
        on_success: Callable[[JobRow, dict[str, Any]], None],
        torch_threads: int = 0,
    ) -> None:
        self.registry = registry
        self.max_concurrent = max_concurrent
        self.on_success = on_success
        self.torch_threads = torch_threads
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule_loop, name="ember-jobs", daemon=True)

    # ---- life -----------------------------------------------------------------------------
    def start(self) -> None:
        self.reconcile()
        self._scheduler.start()

    def reconcile(self) -> None:
        """After a restart no worker of ours is alive: RUNNING jobs become INTERRUPTED."""
        for job in self.registry.jobs_in("RUNNING"):
            self._finish(job.id, "INTERRUPTED", error="the daemon stopped while this job ran; Resume continues it from its last checkpoint")

    def stop(self, grace: float = 5.0) -> None:
        """Stop scheduling and kill the workers (their jobs become INTERRUPTED: resumable)."""
        self._stop.set()
        with self._lock:
            running = list(self._running.values())
        for r in running:
            r.process.kill()
        for r in running:
            if r.thread:
                r.thread.join(grace)

    # ---- submit / cancel --------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def submit(self, job: JobRow) -> None:
        self._emit(job.id, {"kind": "state", "state": "QUEUED"})
        self._wake()

    def cancel(self, job_id: str) -> JobRow | None:
        job = self.registry.job(job_id)
        if job is None or job.state in FINAL_STATES:
            return job
        with self._lock:
            r = self._running.get(job_id)
            if r is not None:
                r.cancelled = True
                r.process.kill()  # checkpoints are atomic: the last whole one stays
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

    def watch(self, job_id: str, after_seq: int = 0, alive: Callable[[], bool] = lambda: True) -> Iterator[tuple[int, float, dict[str, Any], JobRow]]:
        """The job's events after ``after_seq``, then live ones, until the job has ended and
        its log is drained (or ``alive()`` turns false: the caller went away)."""
        seq = after_seq
        while alive():
            events = self.registry.events(job_id, seq)
            job = self.registry.job(job_id)
            assert job is not None
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

    def _start(self, job: JobRow) -> None:
        q = _CTX.Queue()
        spec = {**job.spec, "job_id": job.id, "kind": job.kind, "torch_threads": self.torch_threads}
        proc = _CTX.Process(target=run_job, args=(spec, q), name=f"ember-job-{job.id[:8]}", daemon=True)
        proc.start()
        self.registry.update_job(job.id, state="RUNNING", worker_pid=proc.pid)
        self._emit(job.id, {"kind": "state", "state": "RUNNING"})
        r = _Running(job.id, proc, q)
        r.thread = threading.Thread(target=self._pump, args=(r,), name=f"ember-pump-{job.id[:8]}", daemon=True)
        with self._lock:
            self._running[job.id] = r
        r.thread.start()

    def _pump(self, r: _Running) -> None:
        """Relay one worker's reports until it exits; then settle its job's state."""
        result: tuple[str, dict[str, Any]] | None = None
        while True:
            try:
                kind, payload = r.queue.get(timeout=0.5)
            except queue_mod.Empty:
                if not r.process.is_alive():
                    try:  # drain what it wrote just before exiting
                        kind, payload = r.queue.get(timeout=0.5)
                    except (queue_mod.Empty, EOFError, OSError):
                        break
                else:
                    continue
            except (EOFError, OSError):
                break
            if kind == "event":
                self._emit(r.job_id, payload)
            else:
                result = (kind, payload)
        r.process.join(5)
        with self._lock:
            self._running.pop(r.job_id, None)
        job = self.registry.job(r.job_id)
        assert job is not None
        if result and result[0] == "done":
            try:
                self.on_success(job, result[1])
                self._finish(r.job_id, "SUCCEEDED", version=result[1]["version"])
            except Exception as e:  # noqa: BLE001
                log.exception("recording job %s", r.job_id)
                self._finish(r.job_id, "FAILED", error=f"the model was trained but could not be recorded: {e}")
        elif result and result[0] == "failed":
            self._finish(r.job_id, "FAILED", error=result[1]["message"], code=result[1]["error"])
            if result[1].get("traceback"):
                log.error("job %s failed:\n%s", r.job_id, result[1]["traceback"])
        elif r.cancelled:
            self._finish(r.job_id, "CANCELLED", error="cancelled; its last checkpoint is kept: Resume continues it")
        else:
            self._finish(
                r.job_id,
                "INTERRUPTED",
                error=f"the worker process ended without a result (exit code {r.process.exitcode}); "
                "Resume continues from its last checkpoint",
            )
        self._wake()

    def _finish(self, job_id: str, state: str, *, error: str | None = None, version: int | None = None, code: str | None = None) -> None:
        fields: dict[str, Any] = {"state": state}
        if error is not None:
            fields["error"] = error
        if version is not None:
            fields["version"] = version
        self.registry.update_job(job_id, **fields)
        event = {"kind": "state", "state": state}
        if error:
            event["message"] = error
        if code:
            event["error"] = code
        self._emit(job_id, event)
