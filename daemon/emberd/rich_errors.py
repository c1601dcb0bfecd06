"""``google.rpc.Status`` details for Ember's domain errors (AIP-193, via ``grpcio-status``):
every refusal carries an ``ErrorInfo`` with a stable reason, and, where they apply, a
``BadRequest`` field violation (INVALID_ARGUMENT), a ``PreconditionFailure``
(FAILED_PRECONDITION) or a ``ResourceInfo`` (NOT_FOUND), so a program can act on the error
without parsing its message.

The field comes from the error (``EmberError.field``) where the raiser set it; else from the
message, since Ember's messages start with the field or key they name ("train_data: ...",
"hyperparameter 'optim.lr' must ...", "label column 'y' ..."); else there is no violation."""

from __future__ import annotations

import re

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .engine.errors import EmberError

DOMAIN = "ember.v1"

_HYPER = re.compile(r"^(?:unknown )?hyperparameter '([^']+)'")
_KEY = re.compile(r"^((?:env|model|optim|data)\.[\w.]+)[: ]")
_PREFIX = re.compile(r"^([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*(?: header)?):")
_SIMPLE = {  # message starts -> field
    "label column": "options.label",
    "a label is required": "options.label",
    "seed ": "options.seed",
    "problem_type ": "options.problem_type",
    "column_types ": "options.column_types",
    "unknown metric": "metrics",
    "metric ": "metrics",
    "the request's scale-out fields": "options.scale",
}
_MODEL = re.compile(r"\bmodel '([^']+)'")
_RESOURCES = [  # NOT_FOUND messages -> (resource type, name)
    (re.compile(r"^no model named '([^']+)'"), "ember.v1.Model"),
    (re.compile(r"^model '([^']+)' has no version (\d+)"), "ember.v1.ModelVersion"),
    (re.compile(r"^model '([^']+)' has no alias '([^']+)'"), "ember.v1.ModelAlias"),
    (re.compile(r"^no job '([^']+)'"), "ember.v1.Job"),
    (re.compile(r"^(?:[\w ]+: )?no dataset '([^']+)'"), "ember.v1.Dataset"),
    (re.compile(r"^no (?:dump )?artifact '([^']+)'"), "ember.v1.Artifact"),
    (re.compile(r"^(?:[\w.\[\] ]+: )?no such (?:COCO annotation )?file '([^']+)'"), "file"),
]


def reason_of(e: EmberError) -> str:
    """The stable reason: the error's own, else its class in UPPER_SNAKE (``InvalidArgument``
    -> ``INVALID_ARGUMENT``, ``ImageTooLarge`` -> ``IMAGE_TOO_LARGE``)."""
    if getattr(e, "reason", None):
        return str(e.reason)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type(e).__name__).upper()


def field_of(e: EmberError) -> str | None:
    if getattr(e, "field", None):
        return str(e.field)
    msg = str(e)
    if m := _HYPER.match(msg):
        return f"options.hyperparameters[{m.group(1)}]"
    for start, field in _SIMPLE.items():
        if msg.startswith(start):
            return field
    if m := _KEY.match(msg):
        return f"options.hyperparameters[{m.group(1)}]"
    if m := _PREFIX.match(msg):
        return m.group(1).replace(" ", "_")
    return None


def resource_of(e: EmberError) -> tuple[str, str] | None:
    msg = str(e)
    for pattern, kind in _RESOURCES:
        if m := pattern.match(msg):
            return kind, "@".join(m.groups())
    return None


def _pack(msg: object) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)  # type: ignore[arg-type]
    return a


def status_for(e: EmberError, code: grpc.StatusCode, request_id: str, model: str | None = None) -> grpc.Status:
    """The status to abort with: ``code``, the message, and the details above; ``model``:
    the model the request named (the subject of a failed precondition the message does
    not name)."""
    reason, field = reason_of(e), field_of(e)
    metadata = {"request_id": request_id}
    if field:
        metadata["field"] = field
    details = [_pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))]
    if code == grpc.StatusCode.INVALID_ARGUMENT and field:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=str(e))])))
    elif code == grpc.StatusCode.FAILED_PRECONDITION:
        named = _MODEL.search(str(e))
        model = named.group(1) if named else model
        subject = field or (f"models/{model}" if model else "")
        details.append(_pack(error_details_pb2.PreconditionFailure(
            violations=[error_details_pb2.PreconditionFailure.Violation(type=reason, subject=subject, description=str(e))]
        )))
    elif code == grpc.StatusCode.NOT_FOUND and (res := resource_of(e)):
        details.append(_pack(error_details_pb2.ResourceInfo(resource_type=res[0], resource_name=res[1], description=str(e))))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=str(e), details=details)
    return rpc_status.to_status(status)
