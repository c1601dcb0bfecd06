"""Domain errors of the engine.

Each names what failed and what to do next. The daemon maps these classes, and only these,
to gRPC status codes (one mapping, at the edge); in process they are ordinary exceptions.
"""

from __future__ import annotations


class EmberError(Exception):
    """Base class of every error Ember raises on purpose.

    ``field``: the request field the error is about (``"options.label"``,
    ``"options.hyperparameters[optim.lr]"``), where the raiser knows it; the daemon reports
    it as a ``google.rpc.BadRequest`` field violation. ``reason``: a stable UPPER_SNAKE
    string more specific than the class's own (``ErrorInfo.reason``)."""

    def __init__(self, *args: object, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(*args)
        self.field = field
        self.reason = reason


class InvalidArgument(EmberError, ValueError):
    """The caller's input is wrong (a missing column, an unknown key, an empty frame)."""


class NotFound(EmberError, FileNotFoundError):
    """A model, version, checkpoint or file the caller named does not exist."""


class FailedPrecondition(EmberError):
    """The input is well formed but the current state refuses it (a new class in a
    continued fit, a structural override, a resume with no interrupted run)."""


class Unsupported(EmberError):
    """Ember cannot do this for this model (for example an export ONNX cannot express)."""


class PermissionDenied(EmberError):
    """A path outside the configured roots, or an operation the caller may not do."""


class AlreadyExists(EmberError):
    """The name is taken."""


class DataLoss(EmberError):
    """Bytes arrived damaged (a digest that does not match)."""


class ResourceExhausted(EmberError):
    """A size or memory limit was hit."""


class Cancelled(EmberError):
    """The caller went away (cancelled the call, or its deadline passed): the work stopped."""
