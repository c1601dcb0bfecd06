"""Server interceptors: request ids, access logs, bearer-token auth, and the one mapping
from Ember's domain errors to gRPC status codes."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any, Callable

import grpc

from .engine.errors import (
    AlreadyExists,
    DataLoss,
    EmberError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unsupported,
)

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
}

UNAUTHENTICATED_OK = ("/grpc.health.v1.Health/",)


def status_of(e: EmberError) -> grpc.StatusCode:
    for cls in type(e).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


def _wrap(behavior: Callable, method: str, streaming_response: bool, token: str | None) -> Callable:
    def check(context: grpc.ServicerContext) -> str:
        md = dict(context.invocation_metadata())
        rid = md.get("x-request-id") or uuid.uuid4().hex
        context.set_trailing_metadata((("x-request-id", rid),))
        if token and not method.startswith(UNAUTHENTICATED_OK):
            given = md.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                access_log.info("%s %s UNAUTHENTICATED", rid, method)
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")
        return rid

    def fail(context: grpc.ServicerContext, rid: str, e: Exception) -> None:
        if isinstance(e, EmberError):
            code = status_of(e)
            access_log.info("%s %s %s: %s", rid, method, code.name, e)
            context.abort(code, str(e))
        access_log.exception("%s %s INTERNAL", rid, method)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(e).__name__}: {e}); request id {rid}")

    if streaming_response:

        def stream(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            rid = check(context)
            t0 = time.monotonic()
            try:
                yield from behavior(request_or_iterator, context)
            except Exception as e:  # noqa: BLE001 - mapped to a status here, once
                if context.code() is not None:  # already aborted by the handler
                    raise
                fail(context, rid, e)
            access_log.info("%s %s OK %.1fms", rid, method, 1000 * (time.monotonic() - t0))

        return stream

    def unary(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        rid = check(context)
        t0 = time.monotonic()
        try:
            response = behavior(request_or_iterator, context)
        except Exception as e:  # noqa: BLE001 - mapped to a status here, once
            if context.code() is not None:  # the handler aborted with its own status
                raise
            fail(context, rid, e)
        access_log.info("%s %s OK %.1fms", rid, method, 1000 * (time.monotonic() - t0))
        return response

    return unary


class EmberInterceptor(grpc.ServerInterceptor):
    """Request id, auth, access log and error mapping around every handler."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap(handler.unary_unary, method, False, self.token), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap(handler.unary_stream, method, True, self.token), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap(handler.stream_unary, method, False, self.token), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap(handler.stream_stream, method, True, self.token), handler.request_deserializer, handler.response_serializer
        )
