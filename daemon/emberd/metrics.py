"""Prometheus metrics (``prometheus-client``), one registry per daemon so that several
daemons in one process (tests) keep their own counts.

Counted where they happen: gRPC calls by method and code with latency histograms, Predict
batch sizes, the batches dynamic batching ran (calls and rows each) and upload bytes (the interceptor calls ``observe_call``). Read at scrape time
from the daemon's own state (a collector): jobs by kind and state, the queue's length, the
samples/s and loss of running jobs (their last progress event), the warm cache, worker
starts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .app import Ember

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10_000)


class _StateCollector:
    """Gauges read from the registry, the job manager and the cache at each scrape."""

    def __init__(self, app: "Ember") -> None:
        self.app = app
        self._progress: dict[str, tuple[int, dict[str, Any]]] = {}  # job id -> (seq read, last progress)
        self._lock = threading.Lock()

    def _last_progress(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            seq, last = self._progress.get(job_id, (0, {}))
            for s, _, e in self.app.registry.events(job_id, seq):
                seq = s
                if e.get("kind") == "progress":
                    last = e
            self._progress[job_id] = (seq, last)
            return last or None

    def collect(self) -> Iterator[Metric]:
        jobs = self.app.registry.jobs(limit=1_000_000)
        by = GaugeMetricFamily("ember_jobs", "Jobs the registry holds, by kind and state", labels=["kind", "state"])
        counts: dict[tuple[str, str], int] = {}
        for j in jobs:
            counts[(j.kind, j.state)] = counts.get((j.kind, j.state), 0) + 1
        for (kind, state), n in sorted(counts.items()):
            by.add_metric([kind, state], n)
        yield by
        yield GaugeMetricFamily("ember_job_queue_length", "Jobs waiting for a worker (QUEUED)", value=sum(1 for j in jobs if j.state == "QUEUED"))
        sps = GaugeMetricFamily("ember_job_samples_per_second", "Training throughput of each running job (last progress event)", labels=["job_id", "model"])
        loss = GaugeMetricFamily("ember_job_loss", "Training loss of each running job (last progress event)", labels=["job_id", "model"])
        running = {j.id for j in jobs if j.state == "RUNNING"}
        for j in jobs:
            if j.id in running and (p := self._last_progress(j.id)):
                sps.add_metric([j.id, j.model_name], float(p.get("samples_per_s") or 0.0))
                loss.add_metric([j.id, j.model_name], float(p.get("loss") or 0.0))
        with self._lock:  # forget jobs that ended
            for gone in set(self._progress) - running:
                del self._progress[gone]
        yield sps
        yield loss
        yield CounterMetricFamily("ember_worker_starts", "Training worker processes started (one per rank)", value=getattr(self.app.jobs, "worker_starts", 0))
        c = self.app.cache.stats()
        yield CounterMetricFamily("ember_cache_hits", "Warm-cache lookups that found the version loaded", value=c["hits"])
        yield CounterMetricFamily("ember_cache_misses", "Warm-cache lookups that loaded the version", value=c["misses"])
        yield CounterMetricFamily("ember_cache_evictions", "Versions evicted to stay under the cache budget", value=c["evictions"])
        yield GaugeMetricFamily("ember_cache_bytes", "Bytes of the versions in the warm cache", value=c["bytes"])
        yield GaugeMetricFamily("ember_cache_budget_bytes", "The warm cache's memory budget", value=c["budget"])
        yield GaugeMetricFamily("ember_cache_models", "Versions loaded in the warm cache", value=len(c["cached"]))  # type: ignore[arg-type]


class Metrics:
    """The daemon's metrics and, when asked for, the HTTP endpoint that serves them."""

    def __init__(self, app: "Ember") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.calls = Counter("ember_rpc_requests", "gRPC calls handled, by method and status code", ["method", "code"], registry=r)
        self.latency = Histogram("ember_rpc_latency_seconds", "gRPC call latency, by method", ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.predict_rows = Histogram("ember_predict_batch_rows", "Rows per Predict call", buckets=ROW_BUCKETS, registry=r)
        self.batch_calls = Histogram("ember_batch_calls", "Calls coalesced into each Predict/Embed batch", buckets=ROW_BUCKETS, registry=r)
        self.batch_rows = Histogram("ember_batch_rows", "Rows in each Predict/Embed batch", buckets=ROW_BUCKETS, registry=r)
        self.upload_bytes = Counter("ember_upload_bytes", "Bytes of tables uploaded (UploadDataset)", registry=r)
        r.register(_StateCollector(app))  # type: ignore[arg-type]
        self._http: Any = None

    def observe_call(self, method: str, code: grpc.StatusCode, seconds: float, response: Any = None) -> None:
        short = method.rsplit("/", 1)[-1]
        self.calls.labels(method, code.name).inc()
        self.latency.labels(method).observe(seconds)
        if response is None:
            return
        if short == "Predict":
            self.predict_rows.observe(max(len(response.labels), len(response.values)))
        elif short == "UploadDataset":
            self.upload_bytes.inc(response.dataset.size_bytes)

    def observe_batch(self, calls: int, rows: int) -> None:
        self.batch_calls.observe(calls)
        self.batch_rows.observe(rows)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0: a free port); the port bound."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
