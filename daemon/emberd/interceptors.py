"""Server interceptors: request ids, access logs, bearer-token auth, admission (how many
long-lived streams and how many heavy calls may hold RPC threads at once), and the one
mapping from Ember's domain errors to gRPC status codes, with ``google.rpc`` details
(``rich_errors``). Each call ends in one access-log line (request id, method, model, job id,
duration, code: fields a JSON log formatter writes out) and in the metrics.

The sync server runs every call on one thread pool. A stream holds its thread for as long
as it is open, and a Predict or Fit holds one for as long as it computes, so each of those
two classes has its own cap below the pool's size: past it a call is RESOURCE_EXHAUSTED at
once, and the threads left over always serve health checks and quick calls."""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from .engine.errors import (
    AlreadyExists,
    Cancelled,
    DataLoss,
    EmberError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unsupported,
)
from .engine.sources import ReadPolicy, reading_under
from .metrics import Metrics
from .rich_errors import status_for

access_log = logging.getLogger("emberd.access")

STATUS_OF: dict[type[EmberError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    DataLoss: grpc.StatusCode.DATA_LOSS,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unsupported: grpc.StatusCode.UNIMPLEMENTED,
    Cancelled: grpc.StatusCode.CANCELLED,
}

UNAUTHENTICATED_OK = ("/grpc.health.v1.Health/",)

# Unary calls that compute (or read whole tables) for seconds or more.
HEAVY_METHODS = frozenset(
    f"/ember.v1.ModelService/{m}" for m in ("Fit", "Resume", "Transfer", "Dump", "Export", "Predict", "Evaluate", "Embed")
)


class Gate:
    """At most ``limit`` calls of one class at once; the next is refused, not queued."""

    def __init__(self, what: str, limit: int, flag: str) -> None:
        self.what, self.limit, self.flag = what, limit, flag
        self._free = threading.BoundedSemaphore(limit)

    def enter(self) -> bool:
        """Take a place; False when none is free (then call ``refuse``)."""
        return self._free.acquire(blocking=False)

    def refuse(self, context: grpc.ServicerContext) -> None:
        context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the daemon is already serving its limit of {self.limit} {self.what} at once; "
            f"retry with backoff, or have the operator raise {self.flag}",
        )

    def leave(self) -> None:
        self._free.release()


def status_of(e: EmberError) -> grpc.StatusCode:
    for cls in type(e).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


def _request_fields(method: str, request: Any, response: Any) -> dict[str, str]:
    """The model and job a call is about, for its access-log line."""
    out: dict[str, str] = {}
    for obj in (request, response):
        if obj is None or not hasattr(obj, "DESCRIPTOR"):
            continue
        names = obj.DESCRIPTOR.fields_by_name
        for f in ("model_name", "name"):
            if f in names and getattr(obj, f) and "model" not in out:
                out["model"] = getattr(obj, f)
        if "job" in names and obj.HasField("job"):
            out.setdefault("job_id", obj.job.id)
            out.setdefault("model", obj.job.model_name)
        if "id" in names and ".JobService/" in method and obj.id:
            out.setdefault("job_id", obj.id)
    return out


def _wrap(
    behavior: Callable, method: str, streaming_response: bool, token: str | None, gate: Gate | None, policy: ReadPolicy, metrics: Metrics | None
) -> Callable:
    def record(rid: str, code: grpc.StatusCode, t0: float, request: Any = None, response: Any = None, message: str = "") -> None:
        seconds = time.monotonic() - t0
        if metrics is not None:
            metrics.observe_call(method, code, seconds, response if code == grpc.StatusCode.OK else None)
        extra = {"request_id": rid, "method": method, "code": code.name, "duration_ms": round(1000 * seconds, 1),
                 **_request_fields(method, request, response)}
        tail = f": {message}" if message else ""
        access_log.info("%s %s %s %.1fms%s", rid, method, code.name, 1000 * seconds, tail, extra=extra)

    def check(context: grpc.ServicerContext, t0: float) -> str:
        md = dict(context.invocation_metadata())
        rid = md.get("x-request-id") or uuid.uuid4().hex
        context.set_trailing_metadata((("x-request-id", rid),))
        if token and not method.startswith(UNAUTHENTICATED_OK):
            given = md.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                record(rid, grpc.StatusCode.UNAUTHENTICATED, t0)
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")
        return rid

    def enter(context: grpc.ServicerContext, rid: str, t0: float, request: Any) -> None:
        if gate and not gate.enter():
            record(rid, grpc.StatusCode.RESOURCE_EXHAUSTED, t0, request, message=f"over the limit of {gate.what}")
            gate.refuse(context)

    def fail(context: grpc.ServicerContext, rid: str, t0: float, request: Any, e: Exception) -> None:
        if isinstance(e, EmberError):
            code = status_of(e)
            record(rid, code, t0, request, message=str(e))
            context.abort_with_status(status_for(e, code, rid, _request_fields(method, request, None).get("model")))
        record(rid, grpc.StatusCode.INTERNAL, t0, request)
        access_log.exception("%s %s INTERNAL", rid, method)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(e).__name__}: {e}); request id {rid}")

    def handler_aborted(context: grpc.ServicerContext, rid: str, t0: float, request: Any) -> None:
        code = context.code()
        record(rid, code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN, t0, request)

    if streaming_response:

        def stream(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.monotonic()
            rid = check(context, t0)
            enter(context, rid, t0, request_or_iterator)
            try:
                with reading_under(policy):
                    yield from behavior(request_or_iterator, context)
            except Exception as e:  # noqa: BLE001 - mapped to a status here, once
                if context.code() is not None:  # already aborted by the handler
                    handler_aborted(context, rid, t0, request_or_iterator)
                    raise
                fail(context, rid, t0, request_or_iterator, e)
            finally:  # also when the client goes away (the generator is closed)
                if gate:
                    gate.leave()
            record(rid, grpc.StatusCode.OK, t0, request_or_iterator)

        return stream

    def unary(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        t0 = time.monotonic()
        rid = check(context, t0)
        enter(context, rid, t0, request_or_iterator)
        try:
            with reading_under(policy):
                response = behavior(request_or_iterator, context)
        except Exception as e:  # noqa: BLE001 - mapped to a status here, once
            if context.code() is not None:  # the handler aborted with its own status
                handler_aborted(context, rid, t0, request_or_iterator)
                raise
            fail(context, rid, t0, request_or_iterator, e)
        finally:
            if gate:
                gate.leave()
        record(rid, grpc.StatusCode.OK, t0, request_or_iterator, response)
        return response

    return unary


class EmberInterceptor(grpc.ServerInterceptor):
    """Request id, auth, access log and error mapping around every handler."""

    def __init__(
        self, token: str | None, *, read_policy: ReadPolicy, max_streams: int = 12, max_heavy_calls: int = 8, metrics: Metrics | None = None
    ) -> None:
        self.token = token
        self.metrics = metrics
        self.policy = read_policy  # every path a call names is read under it (engine.sources)
        self.streams = Gate("long-lived streams (WatchJob, UploadDataset, DownloadArtifact, Health.Watch)", max_streams, "--max-streams")
        self.heavy = Gate("heavy calls (Predict, Evaluate, Embed, Dump, Export, Fit, Resume, Transfer)", max_heavy_calls, "--max-heavy-calls")

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        streaming = handler.request_streaming or handler.response_streaming
        gate = self.streams if streaming else self.heavy if method in HEAVY_METHODS else None

        def wrap(behavior: Callable, streaming_response: bool) -> Callable:
            return _wrap(behavior, method, streaming_response, self.token, gate, self.policy, self.metrics)

        io = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), *io)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), *io)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), *io)
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), *io)
