"""Jobs of every kind as callers see them: look one up, list them, watch its events, cancel
it; and the daemons sharing the registry that run them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ..engine.errors import NotFound
from ..jobs import JobManager
from ..registry import Registry
from .domain import JobRecord

Event = tuple[int, float, dict[str, Any]]  # (seq, time, event)


class Jobs:
    def __init__(self, registry: Registry, manager: JobManager) -> None:
        self.registry, self.manager = registry, manager

    def get(self, id: str) -> JobRecord:
        j = self.registry.job(id)
        if j is None:
            raise NotFound(f"no job {id!r}; ListJobs shows the jobs")
        return j

    def list(self, model_name: str | None, limit: int) -> list[JobRecord]:
        return self.registry.jobs(model_name, limit)

    def last_event(self, id: str) -> Event | None:
        return self.registry.last_event(id)

    def watch(self, id: str, after_seq: int, alive: Callable[[], bool]) -> Iterator[tuple[int, float, dict[str, Any], JobRecord]]:
        self.get(id)
        return self.manager.watch(id, after_seq, alive=alive)

    def cancel(self, id: str) -> JobRecord | None:
        self.get(id)
        return self.manager.cancel(id)

    def daemons(self) -> list[dict[str, Any]]:
        """The daemons heartbeating in this registry (alive within three job leases), each
        with its heartbeat's age and how many jobs it runs now."""
        now = time.time()
        running: dict[str, int] = {}
        for j in self.registry.jobs_in("RUNNING"):
            if j.owner:
                running[j.owner] = running.get(j.owner, 0) + 1
        return [{"id": d.id, "address": d.address, "host": d.host, "pid": d.pid, "heartbeat_age_s": max(0.0, now - d.heartbeat_at),
                 "running_jobs": running.get(d.id, 0)} for d in self.registry.daemons(alive_within_s=3 * self.manager.lease_s)]
