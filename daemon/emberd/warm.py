"""The forkserver every process the daemon starts is forked from: training workers (one per
job, one per rank) and exports.

Started once, before any job (``start``), it imports torch, Ember's kernels, Lightning,
transformers, timm, the ONNX stack and the engine, then waits. It never runs a gRPC thread
and never touches CUDA, so each child is a clean fork that starts in milliseconds instead
of paying ~10 s of imports, shares nothing with earlier children, and initialises CUDA
itself if it uses it. A module that cannot be imported is skipped there (multiprocessing's
forkserver does so): the child that needs it reports the error itself.

A child takes the daemon's environment as of its start (``environ()`` in its arguments,
``adopt``), not the forkserver's as of the daemon's start, and dies with the daemon
(``die_with_daemon``: the forkserver outlives the daemon while children hold its pipe)."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import select
import signal
import threading
from typing import Any

METHODS = ("forkserver", "spawn")  # spawn: a fresh interpreter per child (the cold start, for comparison)
MODULES = [
    "torch", "ember_kernels", "lightning.pytorch", "transformers", "timm", "tokenizers", "safetensors.torch",
    "onnx", "onnxruntime", "onnxscript", "torch.onnx",
    "emberd.engine", "emberd.engine.training", "emberd.engine.models", "emberd.engine.export", "emberd.worker", "emberd.batch",
]


def start() -> None:
    """Start the forkserver now; it imports ``MODULES`` in the background (once per process)."""
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(MODULES)
    forkserver.ensure_running()


def context(method: str = "forkserver") -> Any:
    return mp.get_context(method)


def environ() -> dict[str, str]:
    """The daemon's environment now, for a child to ``adopt``."""
    return dict(os.environ)


def adopt(env: dict[str, str] | None) -> None:
    """In a child: take the daemon's environment and re-arm the crash points from it."""
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    from .engine import faults

    faults.arm_from_environment()


def die_with_daemon(daemon_pid: int | None) -> None:
    """SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``) and, when the parent
    is not the daemon (a forkserver, which outlives the daemon while its children hold its
    pipe), when the daemon dies: a thread waits on the daemon's pidfd."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the daemon's reconcile still marks the job INTERRUPTED
        pass
    if not daemon_pid or daemon_pid == os.getppid() or not hasattr(os, "pidfd_open"):
        return
    try:
        fd = os.pidfd_open(daemon_pid)
    except ProcessLookupError:  # the daemon is already gone
        os.kill(os.getpid(), signal.SIGKILL)
    except OSError:  # no pidfds here (old kernel): PR_SET_PDEATHSIG alone
        return

    def wait_for_daemon() -> None:
        select.select([fd], [], [])  # readable once the daemon has exited
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_for_daemon, name="ember-daemon-watch", daemon=True).start()


def _run_export(argv: list[str], env: dict[str, str], daemon_pid: int, threads: int) -> None:
    die_with_daemon(daemon_pid)
    adopt(env)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from .engine.export import main

    os._exit(main(argv))


def run_export(argv: list[str], *, threads: int = 0, method: str = "forkserver") -> int:
    """``python -m emberd.engine.export ARGV`` in a warm child; its exit code."""
    p = context(method).Process(target=_run_export, args=(argv, environ(), os.getpid(), threads), name="ember-export", daemon=True)
    p.start()
    p.join()
    return p.exitcode if p.exitcode is not None else -1

