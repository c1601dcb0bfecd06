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
the job is INTERRUPTED; Resume starts the whole group again from the last checkpoint.

Several daemons on one registry: each claims the queued jobs it starts (``claim_job``, a
compare-and-set: exactly one daemon runs a job) and holds a lease on them that its
housekeeping renews (``keep_leases``); a cancel asked through another daemon reaches the owner
there. A job whose owner stopped renewing (it died) is taken over by whichever daemon's
``take_over`` wins and settled by it like a lost worker (``settle_expired``). Whoever settles
a job runs its ``on_end`` hooks, once: a daemon ends only jobs it holds, and the final state is
a compare-and-set that also checks it still holds the job."""

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
from .daemons import certainly_dead
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
        daemon_id: str = "",
        lease_s: float = 30.0,
    ) -> None:
        self.registry = registry
        self.daemon_id = daemon_id or f"emberd-{os.getpid()}"  # the owner of the jobs it claims
        self.lease_s = lease_s
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
        """At start: the RUNNING jobs of daemons that are certainly dead (this host's, their
        pid gone; this daemon's id from an earlier start; rows from before owners) are settled
        at once: SUCCEEDED with the version they published, else INTERRUPTED. An INTERRUPTED
        job that had published is SUCCEEDED. Jobs of daemons elsewhere wait for their lease
        to run out (``settle_expired``)."""
        daemons = {d.id: d for d in self.registry.daemons()}
        for job in self.registry.jobs_in("RUNNING", "INTERRUPTED"):
            if job.state == "INTERRUPTED":
                version = self._published_quietly(job)
                if version is not None:
                    self._record_published(job, version, "the daemon stopped after this job published its version; recorded on restart")
            elif certainly_dead(job.owner, self.daemon_id, daemons) and self.registry.take_over(job.id, job.owner, self.daemon_id, self.lease_s):
                self._settle_lost(job, "the daemon stopped while this job ran")
        for d in daemons.values():  # the rows of this host's dead daemons (killed: they could not remove them)
            if d.id != self.daemon_id and certainly_dead(d.id, self.daemon_id, daemons):
                self.registry.forget_daemon(d.id)

    def settle_expired(self) -> list[str]:
        """Settle the RUNNING jobs whose lease ran out (their daemon died) and that this
        daemon took over first; their ids."""
        now = time.time()
        settled = []
        for job in self.registry.expired_jobs(now):
            with self._lock:
                mine = job.id in self._running
            if mine:  # ours and alive: the renewal was late
                continue
            if self.registry.take_over(job.id, job.owner, self.daemon_id, self.lease_s, expired_before=now):
                log.warning("job %s: its daemon %s stopped renewing its lease; settling it here", job.id, job.owner)
                self._settle_lost(job, f"its daemon ({job.owner}) stopped while this job ran")
                settled.append(job.id)
        return settled

    def keep_leases(self) -> None:
        """Renew the leases on this daemon's running jobs; kill the workers of those whose
        cancel was asked through another daemon (they end CANCELLED, as a cancel here)."""
        for job_id in self.registry.renew_leases(self.daemon_id, self.lease_s):
            with self._lock:
                r = self._running.get(job_id)
                if r is not None and not r.cancelled:
                    log.info("job %s: cancel asked through another daemon", job_id)
                    r.cancelled = True
                    r.kill()

    def _settle_lost(self, job: JobRecord, why: str) -> None:
        """A job this daemon took over without its workers: SUCCEEDED with the version it
        had published, else lost (``_lost``)."""
        version = self._published_quietly(job)
        if version is not None:
            log.info("job %s published version %d before its daemon stopped: SUCCEEDED", job.id, version)
            self._finish(job.id, "SUCCEEDED", version=version, error="",
                         message="the daemon stopped after this job published its version; recorded later")
        else:
            self._lost(job, why)

    def mark_published(self, job_id: str, version: int) -> None:
        """A job found to have published ``version`` after it was settled otherwise."""
        job = self.registry.job(job_id)
        if job is not None:
            self._record_published(job, version, f"this job had published version {version}")

    def _record_published(self, job: JobRecord, version: int, message: str) -> None:
        """An ended (INTERRUPTED or CANCELLED) job that had published: SUCCEEDED with
        ``version``; the daemon whose compare-and-set wins runs the hooks (just after)."""
        event = {"kind": "state", "state": "SUCCEEDED", "message": message, "version": version}
        if self.registry.settle_job(job.id, ("INTERRUPTED", "CANCELLED"), event, state="SUCCEEDED", version=version, error=""):
            log.info("job %s: SUCCEEDED with version %d (%s)", job.id, version, message)
            self._end_hooks(job, "SUCCEEDED")
            self._wake()

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

    def cancel(self, job_id: str, wait_s: float = 30.0) -> JobRecord | None:
        """Cancel ``job_id`` and return it as it then is: a job this daemon runs has its
        workers killed; a queued one is claimed here and CANCELLED; one running under another
        daemon is asked to stop there (its owner sees the request as it renews its lease),
        waiting up to ``wait_s`` for its final state."""
        job = self.registry.job(job_id)
        if job is None or job.state in FINAL_STATES:
            return job
        with self._lock:
            r = self._running.get(job_id)
            if r is not None:
                r.cancelled = True
                r.kill()  # checkpoints are atomic: the last whole one stays
        if r is not None:
            if r.thread:
                r.thread.join(wait_s)
            return self.registry.job(job_id)
        if job.state == "QUEUED" and self.registry.claim_job(job_id, self.daemon_id, self.lease_s):
            self._finish(job_id, "CANCELLED", error="cancelled before it started")
            return self.registry.job(job_id)
        self.registry.request_cancel(job_id)  # running elsewhere (or just claimed here, not yet started)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            job = self.registry.job(job_id)
            if job is None or job.state in FINAL_STATES:
                return job
            with self._changed:
                self._changed.wait(0.5)
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
        """Claim and start queued jobs, oldest first, while this daemon has free slots (a
        job another daemon claimed first is skipped)."""
        with self._lock:
            free = self.max_concurrent - len(self._running)
        if free <= 0:
            return
        for job in self.registry.jobs_in("QUEUED"):
            if free <= 0 or self._stop.is_set():
                return
            if not self.registry.claim_job(job.id, self.daemon_id, self.lease_s):
                continue
            free -= 1
            try:
                self._start(job)
            except Exception as e:  # noqa: BLE001 - a job claimed here must not stay RUNNING without workers
                log.exception("starting job %s", job.id)
                with self._lock:
                    self._running.pop(job.id, None)
                self._finish(job.id, "FAILED", error=f"the daemon could not start its workers: {e}")

    def _start(self, job: JobRecord) -> None:
        """Start the workers of ``job``, which this daemon has just claimed."""
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
        self.registry.update_job(job.id, worker_pid=procs[0].pid,
                                 event={"kind": "state", "state": "RUNNING", "queued_s": round(queued_s, 3), "daemon": self.daemon_id})
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
    ) -> bool:
        """End a RUNNING job this daemon holds: its ``on_end`` hooks, then its final state and
        final event in one transaction, unless it was settled meanwhile or is no longer held
        here (another daemon took it over after this one's lease ran out): False then."""
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
        if job is None or job.state != "RUNNING" or job.owner != self.daemon_id:
            log.warning("job %s: not settling it %s here, it is %s (held by %s)", job_id, state, job and job.state, job and job.owner)
            return False
        self._end_hooks(job, state)  # before the state: a client that sees the job ended sees its cleanup done
        won = self.registry.settle_job(job_id, ("RUNNING",), event, owner=self.daemon_id, **fields)
        if not won:
            log.warning("job %s: another daemon settled it first (this daemon found it %s)", job_id, state)
        self._wake()
        return won

    def _end_hooks(self, job: JobRecord, state: str) -> None:
        try:
            self.on_end(job, state)
        except Exception:  # noqa: BLE001 - cleanup must not change the job's outcome
            log.exception("cleaning up after job %s", job.id)
