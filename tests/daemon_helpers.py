"""Starting daemons for tests: in process (create_server on port 0) or as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ember.client import _healthy


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
