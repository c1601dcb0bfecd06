"""The composition root: opens (or rebuilds) the registry, builds the daemon's services
(``emberd.services``) over it and wires them to the job manager. The gRPC servicers call
the services it holds; nothing here decides anything a request asks.

Its housekeeping thread keeps the daemon's place among several on one registry (``emberd.daemons``):
every tick (a third of a job lease, at most 5 s) it heartbeats, renews the leases on the jobs it
runs (killing those cancelled through another daemon) and settles the jobs of daemons that
died; it also checkpoints a SQLite registry's WAL every ``registry_checkpoint_s``."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from .daemons import new_daemon_id
from .datastore import DataStore
from .engine.sources import ReadPolicy
from .jobs import JobManager
from .recovery import recover
from .registry import TRAINING_KINDS
from .services.artifacts import Artifacts
from .services.batch_predictions import BatchPredictions
from .services.catalog import Catalog
from .services.domain import JobRecord
from .services.jobs import Jobs
from .services.serving import Serving, warm_cache
from .services.training import Training
from .settings import Settings

log = logging.getLogger("emberd")


class Ember:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root = settings.root_path
        root.mkdir(parents=True, exist_ok=True)
        self.daemon_id = new_daemon_id(settings.daemon_id)
        self.address = ""  # where it serves (server.create_server sets it once bound); in its heartbeat
        self.started_at = time.time()
        # the registry opened (or rebuilt) and the files under root made to agree with it
        self.registry, self.recovery = recover(root, url=settings.registry_url, daemon_id=self.daemon_id, lease_s=settings.job_lease_s)
        # Every path a caller names is read under this (its RPCs by the interceptor, its workers by their spec)
        self.read_policy = ReadPolicy.confined(settings.data_roots, settings.max_image_pixels)
        self.data = DataStore(root, self.registry, self.read_policy, max_json_depth=settings.max_json_depth)
        models_dir, artifacts_dir = root / "models", root / "artifacts"
        models_dir.mkdir(exist_ok=True)
        artifacts_dir.mkdir(exist_ok=True)
        self.jobs = JobManager(
            self.registry,
            max_concurrent=settings.max_concurrent_jobs,
            on_success=lambda job, result: self._hooks(job).job_succeeded(job, result),
            published=lambda job: self._hooks(job).job_published(job),
            on_end=lambda job, state: self._hooks(job).job_ended(job, state),
            torch_threads=settings.torch_threads,
            read_policy=self.read_policy,
            start_method=settings.worker_start,
            daemon_id=self.daemon_id,
            lease_s=settings.job_lease_s,
        )
        self.cache = warm_cache(settings, models_dir)
        self.catalog = Catalog(settings, self.registry, self.cache, models_dir, artifacts_dir)
        self.training = Training(self.registry, self.catalog, self.data, self.jobs, self.read_policy)
        self.serving = Serving(settings, self.catalog, self.cache)
        self.artifacts = Artifacts(settings, self.registry, self.catalog, self.serving, self.data, artifacts_dir)
        self.batch = BatchPredictions(self.registry, self.catalog, self.data, self.read_policy, artifacts_dir, self.training.submit)
        self.job_views = Jobs(self.registry, self.jobs)
        self._housekeeper = threading.Thread(target=self._housekeeping, name="ember-housekeeping", daemon=True)
        self._stopping = threading.Event()

    def _hooks(self, job: JobRecord) -> Training | BatchPredictions:
        """The service that settles ``job``'s kind as it succeeds or ends."""
        return self.training if job.kind in TRAINING_KINDS else self.batch

    def start(self) -> None:
        self.recovery.log()
        self.heartbeat()  # before the first claim: the others see who holds its jobs
        self.catalog.start()
        self.jobs.start()
        self._housekeeper.start()

    def stop(self) -> None:
        self.jobs.stop()
        self._stopping.set()
        self._housekeeper.join(10)
        try:
            self.registry.forget_daemon(self.daemon_id)
        except Exception:  # noqa: BLE001 - its heartbeat only ages
            log.exception("removing this daemon's heartbeat")
        self.registry.close()  # checkpoints the WAL into the main file first

    def heartbeat(self) -> None:
        self.registry.heartbeat(self.daemon_id, socket.gethostname(), os.getpid(), self.address, self.started_at)

    def _housekeeping(self) -> None:
        tick = min(5.0, self.settings.job_lease_s / 3)
        steps = (("heartbeat", self.heartbeat), ("lease renewal", self.jobs.keep_leases), ("settling dead daemons' jobs", self.jobs.settle_expired))
        next_checkpoint = time.monotonic() + self.settings.registry_checkpoint_s
        while not self._stopping.wait(tick):
            for what, step in steps:
                try:
                    step()
                except Exception:  # noqa: BLE001 - the next tick may succeed
                    log.exception("housekeeping: %s", what)
            if time.monotonic() >= next_checkpoint:
                next_checkpoint = time.monotonic() + self.settings.registry_checkpoint_s
                try:
                    self.registry.checkpoint()
                except Exception:  # noqa: BLE001 - the next one may succeed; a clean stop checkpoints too
                    log.exception("registry checkpoint")
