"""Starting daemons for tests (in process: create_server on port 0; or as a subprocess), the
Node client, and the small tabular data the fast tests train on."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ember.client import _healthy

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


def tabular(n: int = 240, seed: int = 0, classes=("a", "b")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    cat = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(x + (cat == "red") > 0.3, classes[0], classes[1])
    return pd.DataFrame({"x": x, "x2": rng.normal(size=n), "color": cat, "label": y})


def node(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``node *args`` in the Node client's folder (tests marked ``node``)."""
    exe = shutil.which("node")
    assert exe, "node (>= 18) is not on PATH: install Node.js"
    assert (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir(), "the Node client's packages are missing: run `npm ci` in the repository root (make test does)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, cwd=NODE_CLIENT)
