"""Several daemons on one registry: who this daemon is, and which others are alive.

Each daemon has an id (``--daemon-id``, by default its host name and a random suffix chosen
at each start) and heartbeats its row in the registry's ``daemons`` table (host, pid,
address). A daemon is *certainly dead* when its row says it ran on this host and that pid is
no longer alive: its jobs are settled at once. A daemon on another host is only known dead
when it stops renewing its leases (``JobManager.settle_expired``)."""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import DaemonRecord

DAEMON_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_daemon_id(given: str = "") -> str:
    """``given``, or this host's name with a short random suffix (a new one per start)."""
    return given or f"{socket.gethostname()}-{secrets.token_hex(3)}"


def pid_alive(pid: int) -> bool:
    """``pid`` runs on this machine (a zombie has died: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "\tZ" in line for line in f)
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def certainly_dead(owner: str | None, me: str, daemons: dict[str, DaemonRecord]) -> bool:
    """Whether the daemon ``owner`` cannot be running: it is this daemon's id from an earlier
    start, it owns nothing (rows from before jobs had owners), it has no row (a daemon
    heartbeats before it claims anything and forgets its row only as it stops), or its row
    says it ran on this host under a pid that is gone. Anything else may be alive elsewhere:
    wait for its lease."""
    if owner is None or owner == me or owner not in daemons:
        return True
    d = daemons[owner]
    return d.host == socket.gethostname() and not pid_alive(d.pid)


def live_others(daemons: Iterable[DaemonRecord], me: str) -> list[DaemonRecord]:
    """The daemons in ``daemons`` (read with a recent heartbeat) other than ``me`` and not
    certainly dead."""
    ds = list(daemons)
    by_id = {d.id: d for d in ds}
    return [d for d in ds if d.id != me and not certainly_dead(d.id, me, by_id)]
