"""The registry: an embedded SQLite database (WAL) indexing models, versions (with
lineage), datasets, jobs with their event logs, and artifacts. Tensors and tables live in
files beside it (see ``layout``); a row is only written once its files are in place.

The schema carries its version in SQLite's ``user_version``; ``MIGRATIONS`` brings an older
registry up to date when it is opened (a newer one is refused: that daemon is too old).
Opening runs ``PRAGMA quick_check``: a damaged file raises ``RegistryDamaged`` (the daemon
then rebuilds the index from the files beside it, see ``rebuild``)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .jobspec import JOB_KINDS, TRAINING_KINDS, JobSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
  name TEXT PRIMARY KEY, label TEXT NOT NULL, problem_type TEXT NOT NULL, eval_metric TEXT NOT NULL,
  created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
  model_name TEXT NOT NULL, version INTEGER NOT NULL, parent_version INTEGER, val_score REAL,
  train_digest TEXT, train_dataset TEXT, job_id TEXT, created_at REAL NOT NULL,
  forgetting_before REAL, forgetting_after REAL, PRIMARY KEY (model_name, version));
CREATE TABLE IF NOT EXISTS datasets (
  id TEXT PRIMARY KEY, display_name TEXT, format TEXT NOT NULL, size_bytes INTEGER NOT NULL,
  num_rows INTEGER NOT NULL, columns TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, model_name TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
  created_at REAL NOT NULL, updated_at REAL NOT NULL, spec TEXT NOT NULL, version INTEGER,
  error TEXT, worker_pid INTEGER, resumes_job_id TEXT);
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (model_name, created_at);
CREATE TABLE IF NOT EXISTS job_events (
  job_id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY (job_id, seq));
CREATE TABLE IF NOT EXISTS artifacts (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, model_name TEXT NOT NULL, version INTEGER NOT NULL,
  path TEXT NOT NULL, files TEXT NOT NULL, size_bytes INTEGER NOT NULL, created_at REAL NOT NULL);
"""

# Migration n brings a registry from user_version n-1 to n; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    SCHEMA,  # 1: the first release (its tables may already exist, unversioned)
    # 2: version aliases, and which run (idempotency key) published each version
    """
    ALTER TABLE versions ADD COLUMN run_id TEXT;
    CREATE TABLE IF NOT EXISTS aliases (
      model_name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, updated_at REAL NOT NULL,
      PRIMARY KEY (model_name, alias));
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class RegistryDamaged(Exception):
    """The registry file cannot be read or fails its integrity check."""


class RegistryTooNew(Exception):
    """A newer emberd wrote the registry (its schema version is above ``SCHEMA_VERSION``)."""


ACTIVE_STATES = ("QUEUED", "RUNNING")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED")
# Jobs that train a model (one at a time per model) and those that only read one


def _marks(values: tuple[str, ...]) -> str:
    """``(?,?,...)``: one SQL placeholder per value."""
    return f"({','.join('?' * len(values))})"


@dataclass(frozen=True)
class ModelRecord:
    """A model: what it predicts and how it is scored (its versions are ``VersionRecord``)."""

    name: str
    label: str
    problem_type: str
    eval_metric: str
    created_at: float


@dataclass(frozen=True)
class VersionRecord:
    """One published version of a model, with its lineage and forgetting scores."""

    model_name: str
    version: int
    parent_version: int | None
    val_score: float | None
    train_digest: str | None
    train_dataset: str | None
    job_id: str | None
    created_at: float
    forgetting_before: float | None
    forgetting_after: float | None
    run_id: str | None = None


@dataclass(frozen=True)
class DatasetRecord:
    """An uploaded table (content-addressed: ``id`` is its sha256)."""

    id: str
    display_name: str | None
    format: str
    size_bytes: int
    num_rows: int
    columns: tuple[str, ...]
    created_at: float


@dataclass(frozen=True)
class ArtifactRecord:
    """A published folder under ``artifacts/`` (a dump, an export, a batch's predictions)."""

    id: str
    kind: str
    model_name: str
    version: int
    path: str
    files: tuple[str, ...]
    size_bytes: int
    created_at: float


@dataclass(frozen=True)
class JobRecord:
    id: str
    model_name: str
    kind: str
    state: str
    created_at: float
    updated_at: float
    spec: JobSpec
    version: int | None
    error: str | None
    worker_pid: int | None
    resumes_job_id: str | None




def _model(r: sqlite3.Row | None) -> ModelRecord | None:
    return None if r is None else ModelRecord(**dict(r))


def _version(r: sqlite3.Row) -> VersionRecord:
    return VersionRecord(**dict(r))


def _dataset(r: sqlite3.Row | None) -> DatasetRecord | None:
    return None if r is None else DatasetRecord(**{**dict(r), "columns": tuple(json.loads(r["columns"]))})


def _artifact(r: sqlite3.Row | None) -> ArtifactRecord | None:
    return None if r is None else ArtifactRecord(**{**dict(r), "files": tuple(json.loads(r["files"]))})


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                problems = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise RegistryDamaged(f"{path} fails its integrity check: {'; '.join(problems[:5])}")
                self._migrate()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise RegistryDamaged(f"{path} cannot be read as a registry: {e}") from None
        except (RegistryDamaged, RegistryTooNew):
            self._db.close()
            raise

    def _migrate(self) -> None:
        have = self._db.execute("PRAGMA user_version").fetchone()[0]
        if have > SCHEMA_VERSION:
            raise RegistryTooNew(
                f"{self.path} has schema version {have}; this emberd reads up to {SCHEMA_VERSION}: run the newer emberd that wrote it"
            )
        for n in range(have + 1, SCHEMA_VERSION + 1):
            script = MIGRATIONS[n - 1]
            if n == 2 and "run_id" in {r["name"] for r in self._db.execute("PRAGMA table_info(versions)")}:
                script = script.replace("ALTER TABLE versions ADD COLUMN run_id TEXT;", "")
            # executescript commits first; the script and the version bump are one transaction
            self._db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={n};\nCOMMIT;")

    @property
    def schema_version(self) -> int:
        return self._one("PRAGMA user_version")[0]

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it (the main file alone is then whole)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def close(self) -> None:
        with self._lock:
            try:
                self.checkpoint()
            finally:
                self._db.close()

    def counts(self) -> dict[str, int]:
        return {t: self._one(f"SELECT COUNT(*) FROM {t}")[0] for t in ("models", "versions", "datasets", "jobs", "artifacts")}

    # ---- models -------------------------------------------------------------------------
    def upsert_model(self, name: str, label: str, problem_type: str, eval_metric: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO models (name, label, problem_type, eval_metric, created_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET problem_type=excluded.problem_type, eval_metric=excluded.eval_metric",
                (name, label, problem_type, eval_metric, time.time()),
            )

    def model(self, name: str) -> ModelRecord | None:
        return _model(self._one("SELECT * FROM models WHERE name=?", (name,)))

    def models(self) -> list[ModelRecord]:
        return [_model(r) for r in self._all("SELECT * FROM models ORDER BY name")]  # type: ignore[misc]

    def delete_model(self, name: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM versions WHERE model_name=?", (name,))
            db.execute("DELETE FROM artifacts WHERE model_name=?", (name,))
            db.execute("DELETE FROM aliases WHERE model_name=?", (name,))
            db.execute("DELETE FROM models WHERE name=?", (name,))

    def add_version(self, model_name: str, version: int, **fields: Any) -> None:
        created = fields.pop("created_at", None) or time.time()
        cols = ["model_name", "version", "created_at", *fields]
        vals = [model_name, version, created, *fields.values()]
        with self.tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO versions ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", tuple(vals)
            )

    def versions(self, model_name: str) -> list[VersionRecord]:
        return [_version(r) for r in self._all("SELECT * FROM versions WHERE model_name=? ORDER BY version", (model_name,))]

    def delete_version(self, model_name: str, version: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM versions WHERE model_name=? AND version=?", (model_name, version))

    # ---- aliases ------------------------------------------------------------------------
    def aliases(self, model_name: str) -> dict[str, int]:
        rows = self._all("SELECT alias, version FROM aliases WHERE model_name=? ORDER BY alias", (model_name,))
        return {r["alias"]: r["version"] for r in rows}

    def set_alias(self, model_name: str, alias: str, version: int) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO aliases VALUES (?,?,?,?) ON CONFLICT(model_name, alias) DO UPDATE SET version=excluded.version, "
                "updated_at=excluded.updated_at",
                (model_name, alias, version, time.time()),
            )

    def delete_alias(self, model_name: str, alias: str) -> bool:
        with self.tx() as db:
            return db.execute("DELETE FROM aliases WHERE model_name=? AND alias=?", (model_name, alias)).rowcount > 0

    # ---- datasets -----------------------------------------------------------------------
    def add_dataset(
        self, id: str, display_name: str, fmt: str, size: int, rows: int, columns: list[str], created_at: float | None = None
    ) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO datasets VALUES (?,?,?,?,?,?,?)",
                (id, display_name, fmt, size, rows, json.dumps(columns), created_at or time.time()),
            )

    def dataset(self, id: str) -> DatasetRecord | None:
        return _dataset(self._one("SELECT * FROM datasets WHERE id=?", (id,)))

    def datasets(self) -> list[DatasetRecord]:
        return [_dataset(r) for r in self._all("SELECT * FROM datasets ORDER BY created_at DESC")]  # type: ignore[misc]

    def delete_dataset(self, id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM datasets WHERE id=?", (id,))

    # ---- jobs ---------------------------------------------------------------------------
    @staticmethod
    def _job(row: sqlite3.Row | None) -> JobRecord | None:
        if row is None:
            return None
        d = dict(row)
        d["spec"] = JobSpec.from_json(d["spec"], kind=d["kind"])
        return JobRecord(**d)

    def create_job(self, id: str, model_name: str, spec: JobSpec, resumes_job_id: str | None = None) -> JobRecord | None:
        """Insert a QUEUED job unless it trains and the model already has an active training
        job (then None); batch predictions run beside anything."""
        now = time.time()
        with self.tx() as db:
            busy = spec.kind in TRAINING_KINDS and db.execute(
                f"SELECT id FROM jobs WHERE model_name=? AND state IN {ACTIVE_STATES} AND kind IN {TRAINING_KINDS}", (model_name,)
            ).fetchone()
            if busy:
                return None
            db.execute(
                "INSERT INTO jobs (id, model_name, kind, state, created_at, updated_at, spec, resumes_job_id) VALUES (?,?,?,?,?,?,?,?)",
                (id, model_name, spec.kind, "QUEUED", now, now, spec.to_json(), resumes_job_id),
            )
        return self.job(id)

    def job(self, id: str) -> JobRecord | None:
        return self._job(self._one("SELECT * FROM jobs WHERE id=?", (id,)))

    def jobs(self, model_name: str | None = None, limit: int = 100, kinds: tuple[str, ...] = JOB_KINDS) -> list[JobRecord]:
        """The newest ``limit`` jobs (of ``model_name``; of ``kinds``), newest first."""
        if model_name:
            rows = self._all(f"SELECT * FROM jobs WHERE model_name=? AND kind IN {_marks(kinds)} ORDER BY created_at DESC LIMIT ?", (model_name, *kinds, limit))
        else:
            rows = self._all(f"SELECT * FROM jobs WHERE kind IN {_marks(kinds)} ORDER BY created_at DESC LIMIT ?", (*kinds, limit))
        return [self._job(r) for r in rows]  # type: ignore[misc]

    def jobs_in(self, *states: str) -> list[JobRecord]:
        q = ",".join("?" * len(states))
        return [self._job(r) for r in self._all(f"SELECT * FROM jobs WHERE state IN ({q}) ORDER BY created_at", states)]  # type: ignore[misc]

    def update_job(self, id: str, *, event: dict[str, Any] | None = None, **fields: Any) -> None:
        """Change a job's fields and, with ``event``, append that event in the same
        transaction (a watcher that sees the new state also sees its event)."""
        fields["updated_at"] = time.time()
        sets = ",".join(f"{k}=?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), id))
            if event is not None:
                self._append(db, id, event)

    def insert_job(self, row: dict[str, Any]) -> None:
        """A job row as it was (``rebuild`` restores jobs from files); its spec a JobSpec of its kind."""
        row = {**row, "spec": row["spec"].to_json()}
        cols = ",".join(row)
        with self.tx() as db:
            db.execute(f"INSERT OR IGNORE INTO jobs ({cols}) VALUES ({','.join('?' * len(row))})", tuple(row.values()))

    def active_job(self, model_name: str, kinds: tuple[str, ...] = TRAINING_KINDS) -> JobRecord | None:
        """A queued or running job of ``model_name`` (by default one that trains it)."""
        return self._job(self._one(f"SELECT * FROM jobs WHERE model_name=? AND state IN {ACTIVE_STATES} AND kind IN {_marks(kinds)}", (model_name, *kinds)))

    def append_event(self, job_id: str, event: dict[str, Any]) -> int:
        with self.tx() as db:
            return self._append(db, job_id, event)

    @staticmethod
    def _append(db: sqlite3.Connection, job_id: str, event: dict[str, Any]) -> int:
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id=?", (job_id,)).fetchone()[0]
        db.execute("INSERT INTO job_events VALUES (?,?,?,?)", (job_id, seq, time.time(), json.dumps(event)))
        return seq

    def last_event(self, job_id: str) -> tuple[int, float, dict[str, Any]] | None:
        r = self._one("SELECT seq, time, event FROM job_events WHERE job_id=? ORDER BY seq DESC LIMIT 1", (job_id,))
        return None if r is None else (r["seq"], r["time"], json.loads(r["event"]))

    def events(self, job_id: str, after_seq: int = 0) -> list[tuple[int, float, dict[str, Any]]]:
        rows = self._all("SELECT seq, time, event FROM job_events WHERE job_id=? AND seq>? ORDER BY seq", (job_id, after_seq))
        return [(r["seq"], r["time"], json.loads(r["event"])) for r in rows]

    # ---- artifacts ----------------------------------------------------------------------
    def add_artifact(
        self, id: str, kind: str, model_name: str, version: int, path: str, files: list[str], size: int, created_at: float | None = None
    ) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO artifacts VALUES (?,?,?,?,?,?,?,?)",
                (id, kind, model_name, version, path, json.dumps(files), size, created_at or time.time()),
            )

    def delete_artifact(self, id: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM artifacts WHERE id=?", (id,))

    def artifact(self, id: str) -> ArtifactRecord | None:
        return _artifact(self._one("SELECT * FROM artifacts WHERE id=?", (id,)))

    def artifacts(self, model_name: str | None = None) -> list[ArtifactRecord]:
        if model_name is None:
            rows = self._all("SELECT * FROM artifacts ORDER BY created_at")
        else:
            rows = self._all("SELECT * FROM artifacts WHERE model_name=? ORDER BY created_at", (model_name,))
        return [_artifact(r) for r in rows]  # type: ignore[misc]
