"""The gRPC server: ``create_server(settings) -> (server, port, app)`` builds it (tests bind
port 0); ``serve`` runs it until SIGTERM/SIGINT and shuts down gracefully."""

from __future__ import annotations

import logging
import signal
import sys
import threading
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
from .recovery import Unrecoverable
from .recovery import cli as recovery_cli
from .registry import RegistryTooNew
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

    def __init__(self, server: grpc.Server, port: int, app: Ember, health_servicer: health.HealthServicer) -> None:
        self.server, self.port, self.app, self.health = server, port, app, health_servicer

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()  # NOT_SERVING first, so balancers drain us
        self.server.stop(grace).wait()
        self.app.stop()


def create_server(settings: Settings) -> Daemon:
    settings = check_settings(settings)
    app = Ember(settings)
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.rpc_threads, thread_name_prefix="ember-rpc"),
        interceptors=[
            EmberInterceptor(
                settings.token, read_policy=app.read_policy, max_streams=settings.max_streams, max_heavy_calls=settings.max_heavy_calls
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
    app.start()
    server.start()
    for name in ["", *SERVICES]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("emberd listening on %s:%d (root %s)", settings.host, port, settings.root)
    return Daemon(server, port, app, health_servicer)


def serve(settings: Settings) -> None:
    d = create_server(settings)
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"emberd ready on {settings.host}:{d.port}", flush=True)
    done.wait()
    d.stop()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args[:1] == ["registry"]:  # emberd registry check|rebuild --root ROOT
        raise SystemExit(recovery_cli(args[1:]))
    settings = load_settings(args)
    try:
        serve(settings)
    except (Unrecoverable, RegistryTooNew) as e:
        raise SystemExit(f"emberd: {e}") from None


if __name__ == "__main__":
    main()
