"""Named crash points for durability tests.

``EMBER_FAULT=<point>`` makes the process that reaches ``fault("<point>")`` kill itself with
SIGKILL there (no cleanup, no flush: what a power cut or the OOM killer does). In a
training worker the daemon that started it is killed first, so both die at that instant
(``EMBER_FAULT=<point>:self`` kills the reaching process only). With the variable unset,
``fault`` returns at once: the points cost one call and one check.

The points (README, "Durability", says what a restart promises after each):
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Callable

POINTS = {
    "upload.mid": "the daemon, with the first chunk of an upload written to its temp file",
    "checkpoint.written": "a worker, right after writing a training checkpoint",
    "publish.renamed": "a worker, after renaming a new version into place, before the registry records it",
    "publish.recorded": "the daemon, after recording a job's version, before the job's final state and event",
    "dump.mid": "the daemon, with a dump's files staged, before it is renamed into place",
    "export.mid": "the export process, with the ONNX bundle staged, before it is renamed into place",
}

if __doc__:  # None under python -OO
    __doc__ += "".join(f"\n- ``{k}``: {v}" for k, v in POINTS.items())

WORKER_ENV = "EMBER_WORKER_OF"  # set in a training worker: the daemon's pid


def _armed() -> tuple[str, bool] | None:
    spec = os.environ.get("EMBER_FAULT", "")
    if not spec:
        return None
    point, _, scope = spec.partition(":")
    if point not in POINTS:
        warnings.warn(f"EMBER_FAULT={spec!r} names no crash point (they are {sorted(POINTS)}); none is armed", stacklevel=2)
        return None
    return point, scope == "self"


def _kill_at(armed: tuple[str, bool]):
    point, self_only = armed

    def fault(name: str) -> None:
        if name != point:
            return
        parent = os.environ.get(WORKER_ENV)
        if parent and not self_only:
            try:
                os.kill(int(parent), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass
        os.kill(os.getpid(), signal.SIGKILL)

    return fault


_kill: Callable[[str], None] | None = None


def arm_from_environment() -> None:
    """(Re)read ``EMBER_FAULT``: at import, and in a worker forked from the forkserver once it
    has taken the daemon's environment."""
    global _kill
    spec = _armed()
    _kill = _kill_at(spec) if spec else None


def fault(name: str) -> None:
    """Crash point ``name``: SIGKILL here if ``EMBER_FAULT`` names it, else nothing."""
    if _kill is not None:
        _kill(name)


arm_from_environment()
