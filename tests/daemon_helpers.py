"""Starting daemons for tests (in process: create_server on port 0; or as a subprocess) and
ending exactly the processes a test started, the Node client, and the small tabular data the
fast tests train on."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from ember.client import _healthy
from ember_examples.datasets import tabular  # noqa: F401 - the tests' small table, shared with the benches

ROOT = Path(__file__).resolve().parents[1]  # the repository
NODE_CLIENT = ROOT / "clients" / "node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon_process(root: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(root.parent / f"emberd-{port}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "emberd", "--port", str(port), "--root", str(root), *extra], stdout=log, stderr=subprocess.STDOUT,
        env=None if env is None else {**os.environ, **env},
    )
    deadline = time.monotonic() + 60
    while not _healthy(f"127.0.0.1:{port}"):
        assert proc.poll() is None, f"emberd exited; see {log.name}"
        assert time.monotonic() < deadline, "emberd did not become healthy"
        time.sleep(0.2)
    return proc


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie has died: it only waits for its parent to read its status)."""
    try:
        return "\tZ" not in next(line for line in open(f"/proc/{pid}/status") if line.startswith("State:"))
    except (OSError, StopIteration):
        return False



def emberd_started_here(port: int) -> list[int]:
    """The pids of ``python -m emberd --port PORT ...`` processes that this process started
    (its descendants, read from /proc): what a test may end, never a process found by name."""
    mine = []
    for pid in descendants(os.getpid()):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")
        except OSError:
            continue
        if argv[1:5] == ["-m", "emberd", "--port", str(port)] and alive(pid):
            mine.append(pid)
    return mine


def terminate(pids: list[int], timeout: float = 30.0) -> None:
    """SIGTERM each of ``pids`` and wait until they have exited (SIGKILL after ``timeout``)."""
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def warm_and_cold_weights(tmp_path: Path, frame: pd.DataFrame, hyperparameters: dict, check=lambda client, job: None) -> dict[str, dict]:
    """Fit ``frame`` (seed 3) once in a cold worker (spawn) and once in a warm one (forkserver),
    each on its own daemon; ``check(client, job)`` runs on each succeeded job; the weights by start."""
    from safetensors.numpy import load_file

    from ember import Client
    from ember.v1 import job_pb2
    from emberd.engine.model_store import ModelStore
    from emberd.server import create_server
    from emberd.settings import Settings

    weights = {}
    for start in ("spawn", "forkserver"):
        d = create_server(Settings(port=0, root=str(tmp_path / start), worker_start=start))
        try:
            with Client(f"127.0.0.1:{d.port}") as c:
                job = c.wait(c.fit("m", frame, label="label", hyperparameters=hyperparameters, seed=3), progress=False)
                assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
                check(c, job)
        finally:
            d.stop(1)
        weights[start] = load_file(str(ModelStore(tmp_path / start / "models" / "m").version_dir(1) / "model.safetensors"))
    return weights


def node(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``node *args`` in the Node client's folder (tests marked ``node``)."""
    exe = shutil.which("node")
    assert exe, "node (>= 18) is not on PATH: install Node.js"
    missing = "the Node client's packages are missing: run `npm ci` in the repository root (make test does)"
    assert (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir(), missing
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, cwd=NODE_CLIENT)
