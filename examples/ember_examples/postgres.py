"""A real PostgreSQL server for the tests and benches: ``initdb`` in a temp folder, ``pg_ctl`` on a free
loopback port, trust authentication (loopback only), stopped at the end. As root the server
runs as the ``postgres`` user (PostgreSQL refuses root). ``.ci/run`` installs the binaries
when they are missing."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

BINDIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def _binary(name: str) -> str:
    found = shutil.which(name) or next((str(d / name) for d in BINDIRS if (d / name).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server (Debian: apt-get install postgresql; .ci/run does)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One server; ``database()`` gives each test its own fresh database."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ember-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            os.chmod(self.base, 0o755)
            self.data.mkdir()
            shutil.chown(self.data, "postgres", "postgres")
        self._run(_binary("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c max_connections=300"
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")

    def _run(self, *cmd: str) -> None:
        r = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
