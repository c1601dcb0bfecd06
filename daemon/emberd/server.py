"""The gRPC server: ``create_server(settings) -> Daemon`` builds it (tests bind port 0), with
its metrics endpoint and dashboard when their ports are set; ``serve`` runs it until
SIGTERM/SIGINT, then drains: NOT_SERVING, in-flight calls get ``drain_s`` to finish, workers
stop (their jobs stay resumable). Under systemd (``Type=notify``) it tells the manager when it
is ready and when it is stopping (the sd_notify datagram protocol, no library needed)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ember.v1 import (
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    dataset_service_pb2,
    dataset_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
)

from .app import Ember
from .interceptors import EmberInterceptor
from .metrics import Metrics
from .recovery import Unrecoverable
from .recovery import cli as recovery_cli
from .registry import RegistryOutdated, RegistryTooNew
from .servicers import ArtifactServicer, DatasetServicer, JobServicer, ModelServicer, Servicers
from .settings import Settings, check_settings, load_settings

log = logging.getLogger("emberd")

SERVICES = [
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    dataset_service_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
    artifact_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
]


class Daemon:
    """A started server with its app and health service (what ``serve`` and tests hold)."""

    def __init__(self, server: grpc.Server, port: int, app: Ember, health_servicer: health.HealthServicer, metrics: Metrics) -> None:
        self.server, self.port, self.app, self.health, self.metrics = server, port, app, health_servicer, metrics
        self.metrics_port: int | None = None  # where /metrics is served, when it is
        self.http_port: int | None = None  # where the dashboard is served, when it is
        self.dashboard: object | None = None

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()  # NOT_SERVING first, so balancers drain us
        self.server.stop(grace).wait()
        self.app.stop()
        self.metrics.stop()
        if self.dashboard is not None:
            self.dashboard.stop()  # type: ignore[attr-defined]


def create_server(settings: Settings) -> Daemon:
    settings = check_settings(settings)
    app = Ember(settings)
    metrics = Metrics(app)
    app.serving.on_batch = metrics.observe_batch
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # clients send keepalive pings (ember.client: every 30 s); accept them, also between calls
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.rpc_threads, thread_name_prefix="ember-rpc"),
        interceptors=[
            EmberInterceptor(
                settings.token, read_policy=app.read_policy, max_streams=settings.max_streams, max_heavy_calls=settings.max_heavy_calls,
                metrics=metrics,
            )
        ],
        options=opts,
    )
    s = Servicers(app)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(s), server)
    job_service_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(s), server)
    dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server(DatasetServicer(s), server)
    artifact_service_pb2_grpc.add_ArtifactServiceServicer_to_server(ArtifactServicer(s), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert and settings.tls_key:
        with open(settings.tls_key, "rb") as k, open(settings.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"emberd: cannot listen on {address} (in use?)")
    app.address = f"{settings.host}:{port}"
    app.start()
    server.start()
    for name in ["", *SERVICES]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    d = Daemon(server, port, app, health_servicer, metrics)
    if settings.metrics_port >= 0:
        d.metrics_port = metrics.serve(settings.host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.host, d.metrics_port)
    if settings.http_port >= 0:
        from .dashboard import Dashboard

        d.dashboard = dash = Dashboard(app, metrics, token=settings.token)
        d.http_port = dash.serve(settings.host, settings.http_port)
        log.info("dashboard on http://%s:%d/", settings.host, d.http_port)
    log.info("emberd listening on %s:%d (root %s)", settings.host, port, settings.root)
    return d


def sd_notify(state: str) -> bool:
    """Tell systemd (``Type=notify``) about ``state`` ("READY=1", "STOPPING=1"); False when
    not run by a manager that listens (no ``NOTIFY_SOCKET``)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # an abstract socket
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(addr)
            s.sendall(state.encode())
        except OSError as e:
            log.warning("sd_notify %s to %s failed: %s", state, addr, e)
            return False
    return True


def serve(settings: Settings) -> None:
    d = create_server(settings)
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    extra = "".join(f" {k}={v}" for k, v in (("metrics", d.metrics_port), ("dashboard", d.http_port)) if v is not None)
    print(f"emberd ready on {settings.host}:{d.port}{extra}", flush=True)  # the readiness line scripts wait for
    sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving on {settings.host}:{d.port}")
    done.wait()
    sd_notify(f"STOPPING=1\nSTATUS=draining (up to {settings.drain_s:g} s)")
    t0 = time.monotonic()
    d.stop(grace=settings.drain_s)
    log.info("emberd stopped (drained in %.1f s)", time.monotonic() - t0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["registry"]:  # emberd registry check|rebuild|upgrade
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        raise SystemExit(recovery_cli(args[1:]))
    settings = load_settings(args)
    from .logs import configure

    configure(settings.log_format)
    try:
        serve(settings)
    except (Unrecoverable, RegistryTooNew, RegistryOutdated) as e:
        raise SystemExit(f"emberd: {e}") from None


if __name__ == "__main__":
    main()
