"""The registry: models, versions (with lineage), datasets, jobs with their event logs,
artifacts and aliases, in SQLite (the embedded default: ``registry.sqlite`` under the root,
WAL) or PostgreSQL (``--registry-url postgresql://...``, shared by several daemons). Tensors
and tables live in files beside it (see ``layout``); a row is only written once its files are
in place. Queries are SQLAlchemy Core, the same for both stores.

The schema is versioned by Alembic (``emberd/migrations``). Opening a SQLite registry brings it
up to date (a registry written before Alembic is stamped from its ``user_version`` first,
which is still kept in step so that pre-Alembic daemons refuse a newer file); a PostgreSQL one
that is behind is refused until ``emberd registry upgrade`` (other daemons may still run the
old code). A registry newer than this daemon is always refused. Opening SQLite runs ``PRAGMA
quick_check``: a damaged file raises ``RegistryDamaged`` (the daemon then rebuilds the index
from the files beside it, see ``emberd.recovery``).

Several daemons: a job is claimed by one daemon (``claim_job``: a compare-and-set from QUEUED,
so exactly one claimer wins whatever the store) which then holds a lease it renews
(``renew_leases``); a RUNNING job whose lease ran out belongs to a daemon that died
(``expired_jobs``). At most one training job per model is active: a unique partial index, so
two daemons cannot both insert one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .jobspec import JOB_KINDS, TRAINING_KINDS, JobSpec

# The first release's tables as it wrote them (tests build pre-Alembic registries from it).
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

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pre-Alembic registries said their schema in user_version: 1 (or 0, unversioned) and 2
LEGACY_REVISIONS = {0: "0001", 1: "0001", 2: "0002"}


class RegistryDamaged(Exception):
    """The registry file cannot be read or fails its integrity check."""


class RegistryTooNew(Exception):
    """A newer emberd wrote the registry (its schema is past this daemon's newest revision)."""


class RegistryOutdated(Exception):
    """A shared (PostgreSQL) registry behind this daemon's schema: ``emberd registry upgrade``."""


ACTIVE_STATES = ("QUEUED", "RUNNING")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED")

# ---- the schema at head (migrations/ builds it; these describe it to the queries) ---------------
meta = sa.MetaData()
T, F, N, B = sa.Text, sa.Float, sa.Integer, sa.BigInteger  # text, float, integer, big integer
models_t = sa.Table(
    "models", meta, sa.Column("name", T, primary_key=True), sa.Column("label", T), sa.Column("problem_type", T),
    sa.Column("eval_metric", T), sa.Column("created_at", F),
)
versions_t = sa.Table(
    "versions", meta, sa.Column("model_name", T, primary_key=True), sa.Column("version", N, primary_key=True),
    sa.Column("parent_version", N), sa.Column("val_score", F), sa.Column("train_digest", T), sa.Column("train_dataset", T),
    sa.Column("job_id", T), sa.Column("created_at", F), sa.Column("forgetting_before", F), sa.Column("forgetting_after", F),
    sa.Column("run_id", T),
)
datasets_t = sa.Table(
    "datasets", meta, sa.Column("id", T, primary_key=True), sa.Column("display_name", T), sa.Column("format", T),
    sa.Column("size_bytes", B), sa.Column("num_rows", B), sa.Column("columns", T), sa.Column("created_at", F),
)
jobs_t = sa.Table(
    "jobs", meta, sa.Column("id", T, primary_key=True), sa.Column("model_name", T), sa.Column("kind", T), sa.Column("state", T),
    sa.Column("created_at", F), sa.Column("updated_at", F), sa.Column("spec", T), sa.Column("version", N), sa.Column("error", T),
    sa.Column("worker_pid", N), sa.Column("resumes_job_id", T), sa.Column("owner", T), sa.Column("lease_until", F),
    sa.Column("cancel_requested", sa.Boolean),
)
events_t = sa.Table(
    "job_events", meta, sa.Column("job_id", T, primary_key=True), sa.Column("seq", N, primary_key=True), sa.Column("time", F),
    sa.Column("event", T),
)
artifacts_t = sa.Table(
    "artifacts", meta, sa.Column("id", T, primary_key=True), sa.Column("kind", T), sa.Column("model_name", T), sa.Column("version", N),
    sa.Column("path", T), sa.Column("files", T), sa.Column("size_bytes", B), sa.Column("created_at", F),
)
aliases_t = sa.Table(
    "aliases", meta, sa.Column("model_name", T, primary_key=True), sa.Column("alias", T, primary_key=True), sa.Column("version", N),
    sa.Column("updated_at", F),
)
daemons_t = sa.Table(
    "daemons", meta, sa.Column("id", T, primary_key=True), sa.Column("host", T), sa.Column("pid", N), sa.Column("address", T),
    sa.Column("started_at", F), sa.Column("heartbeat_at", F),
)
COUNTED = {"models": models_t, "versions": versions_t, "datasets": datasets_t, "jobs": jobs_t, "artifacts": artifacts_t}


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
    owner: str | None = None  # the daemon that claimed it (several daemons: see claim_job)
    lease_until: float | None = None  # its owner renews this while the job runs
    cancel_requested: bool = False  # asked through a daemon that does not run it


@dataclass(frozen=True)
class DaemonRecord:
    """A daemon serving this registry (its heartbeat says it is alive)."""

    id: str
    host: str
    pid: int
    address: str
    started_at: float
    heartbeat_at: float




def _record(cls: type, row: Any) -> Any:
    return None if row is None else cls(**row._mapping)


def _model(r: Any) -> ModelRecord | None:
    return _record(ModelRecord, r)


def _dataset(r: Any) -> DatasetRecord | None:
    return None if r is None else DatasetRecord(**{**r._mapping, "columns": tuple(json.loads(r.columns))})


def _artifact(r: Any) -> ArtifactRecord | None:
    return None if r is None else ArtifactRecord(**{**r._mapping, "files": tuple(json.loads(r.files))})


def _job(r: Any) -> JobRecord | None:
    if r is None:
        return None
    d = dict(r._mapping)
    d["spec"] = JobSpec.from_json(d["spec"], kind=d["kind"])
    d["cancel_requested"] = bool(d["cancel_requested"])
    return JobRecord(**d)


def registry_url(root: Path, url: str = "") -> str:
    """The registry a daemon at ``root`` uses: ``url`` when given, else ``registry.sqlite`` there."""
    return url or f"sqlite:///{root / 'registry.sqlite'}"


def redact(url: str) -> str:
    """``url`` without its password (for logs and errors)."""
    return sa.make_url(url).render_as_string(hide_password=True)


DAEMON_FIELDS = ("host", "pid", "address", "started_at", "heartbeat_at")


class Registry:
    """One registry (``target``: a SQLite file's path or a SQLAlchemy URL). ``upgrade``: bring
    an older schema up to date on opening (the default for SQLite; PostgreSQL refuses an older
    schema unless asked, see ``RegistryOutdated``)."""

    def __init__(self, target: Path | str, *, upgrade: bool | None = None) -> None:
        url = target if isinstance(target, str) else f"sqlite:///{target}"
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.path: Path | None = Path(sa.make_url(url).database or "") if self.is_sqlite else None
        if self.is_sqlite:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the driver in autocommit: a write transaction is BEGIN IMMEDIATE (tx), a read one statement
            self._engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"check_same_thread": False, "timeout": 30})
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
            self._reads = self._engine
        else:
            self._engine = sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=24)
            self._reads = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        try:
            if self.is_sqlite:
                self._quick_check()
            self._migrate(self.is_sqlite if upgrade is None else upgrade)
        except sa.exc.DatabaseError as e:
            self._engine.dispose()
            if self.is_sqlite:
                raise RegistryDamaged(f"{self.path} cannot be read as a registry: {e.orig}") from None
            raise
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Registry({redact(self.url)})"

    # ---- schema ----------------------------------------------------------------------------
    def _quick_check(self) -> None:
        with self._engine.connect() as c:
            problems = [r[0] for r in c.exec_driver_sql("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise RegistryDamaged(f"{self.path} fails its integrity check: {'; '.join(problems[:5])}")

    def _migrate(self, upgrade: bool) -> None:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS_DIR))
        head = script.get_current_head()
        known = [s.revision for s in script.walk_revisions()][::-1]  # oldest first
        with self.tx() as conn:
            if not self.is_sqlite:  # one daemon migrates at a time; the others wait, then see head
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7061626)"))
            ctx = MigrationContext.configure(conn)
            current = ctx.get_current_revision()
            if current is None and sa.inspect(conn).has_table("models"):  # written before Alembic
                current = self._legacy_revision(conn, len(known))
                ctx.stamp(script, current)
            if current is not None and current not in known:
                raise RegistryTooNew(
                    f"{self.where} has schema revision {current}; this emberd knows up to {head}: run the newer emberd that wrote it"
                )
            if current != head:
                if current is not None and not upgrade:
                    raise RegistryOutdated(
                        f"{self.where} has schema revision {current}, this emberd needs {head}: stop the daemons that use it "
                        f"and run `emberd registry upgrade --registry-url URL`"
                    )
                ctx = MigrationContext.configure(conn, opts={"script": script, "fn": lambda rev, _: script._upgrade_revs(head, rev)})
                from alembic.operations import Operations

                with Operations.context(ctx):
                    ctx.run_migrations()
            if self.is_sqlite:  # pre-Alembic daemons read this and refuse a newer file
                conn.exec_driver_sql(f"PRAGMA user_version={known.index(head) + 1}")

    def _legacy_revision(self, conn: sa.Connection, newest: int) -> str:
        have = conn.exec_driver_sql("PRAGMA user_version").scalar() if self.is_sqlite else 0
        if have > newest or have not in LEGACY_REVISIONS:
            raise RegistryTooNew(f"{self.where} has schema version {have}; this emberd reads up to {newest}: run the newer emberd that wrote it")
        return LEGACY_REVISIONS[have]

    @property
    def where(self) -> str:
        return str(self.path) if self.is_sqlite else redact(self.url)

    @property
    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self._reads.connect() as c:
            return MigrationContext.configure(c).get_current_revision()

    def checkpoint(self) -> None:
        """SQLite: copy the WAL into the main file and truncate it (the main file alone is then whole)."""
        if self.is_sqlite:
            with self._engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def tx(self) -> Iterator[sa.Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE, so writers queue instead of failing)."""
        if not self.is_sqlite:
            with self._engine.begin() as conn:
                yield conn
            return
        with self._engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    def _all(self, query: Any) -> list[Any]:
        with self._reads.connect() as c:
            return c.execute(query).all()

    def _one(self, query: Any) -> Any:
        with self._reads.connect() as c:
            return c.execute(query).first()

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that can say ON CONFLICT (both stores speak it, each through its dialect)."""
        return (sqlite.insert if self.is_sqlite else postgresql.insert)(table)

    def close(self) -> None:
        try:
            self.checkpoint()
        finally:
            self._engine.dispose()

    def counts(self) -> dict[str, int]:
        return {name: self._one(sa.select(sa.func.count()).select_from(t))[0] for name, t in COUNTED.items()}

    # ---- models -------------------------------------------------------------------------
    def upsert_model(self, name: str, label: str, problem_type: str, eval_metric: str) -> None:
        q = self._insert(models_t).values(name=name, label=label, problem_type=problem_type, eval_metric=eval_metric, created_at=time.time())
        with self.tx() as db:
            db.execute(q.on_conflict_do_update(index_elements=["name"], set_={"problem_type": q.excluded.problem_type, "eval_metric": q.excluded.eval_metric}))

    def model(self, name: str) -> ModelRecord | None:
        return _model(self._one(sa.select(models_t).where(models_t.c.name == name)))

    def models(self) -> list[ModelRecord]:
        return [_model(r) for r in self._all(sa.select(models_t).order_by(models_t.c.name))]  # type: ignore[misc]

    def delete_model(self, name: str) -> None:
        with self.tx() as db:
            for t in (versions_t, artifacts_t, aliases_t):
                db.execute(sa.delete(t).where(t.c.model_name == name))
            db.execute(sa.delete(models_t).where(models_t.c.name == name))

    def add_version(self, model_name: str, version: int, **fields: Any) -> None:
        fields["created_at"] = fields.get("created_at") or time.time()
        q = self._insert(versions_t).values(model_name=model_name, version=version, **fields)
        with self.tx() as db:  # a version's row is rewritten whole (rebuilds, adoption)
            db.execute(q.on_conflict_do_update(index_elements=["model_name", "version"], set_={k: q.excluded[k] for k in fields}))

    def versions(self, model_name: str) -> list[VersionRecord]:
        q = sa.select(versions_t).where(versions_t.c.model_name == model_name).order_by(versions_t.c.version)
        return [_record(VersionRecord, r) for r in self._all(q)]

    def latest_version(self, model_name: str) -> int | None:
        """The newest published version of ``model_name`` (one indexed read: warm caches ask it per call)."""
        return self._one(sa.select(sa.func.max(versions_t.c.version)).where(versions_t.c.model_name == model_name))[0]

    def delete_version(self, model_name: str, version: int) -> None:
        with self.tx() as db:
            db.execute(sa.delete(versions_t).where(versions_t.c.model_name == model_name, versions_t.c.version == version))

    # ---- aliases ------------------------------------------------------------------------
    def aliases(self, model_name: str) -> dict[str, int]:
        q = sa.select(aliases_t.c.alias, aliases_t.c.version).where(aliases_t.c.model_name == model_name).order_by(aliases_t.c.alias)
        return {r.alias: r.version for r in self._all(q)}

    def set_alias(self, model_name: str, alias: str, version: int) -> None:
        q = self._insert(aliases_t).values(model_name=model_name, alias=alias, version=version, updated_at=time.time())
        with self.tx() as db:
            db.execute(q.on_conflict_do_update(index_elements=["model_name", "alias"], set_={k: q.excluded[k] for k in ("version", "updated_at")}))

    def delete_alias(self, model_name: str, alias: str) -> bool:
        with self.tx() as db:
            return db.execute(sa.delete(aliases_t).where(aliases_t.c.model_name == model_name, aliases_t.c.alias == alias)).rowcount > 0

    # ---- datasets -----------------------------------------------------------------------
    def add_dataset(
        self, id: str, display_name: str, fmt: str, size: int, rows: int, columns: list[str], created_at: float | None = None
    ) -> None:
        q = self._insert(datasets_t).values(
            id=id, display_name=display_name, format=fmt, size_bytes=size, num_rows=rows, columns=json.dumps(columns), created_at=created_at or time.time()
        )
        with self.tx() as db:
            db.execute(q.on_conflict_do_nothing())

    def dataset(self, id: str) -> DatasetRecord | None:
        return _dataset(self._one(sa.select(datasets_t).where(datasets_t.c.id == id)))

    def datasets(self) -> list[DatasetRecord]:
        return [_dataset(r) for r in self._all(sa.select(datasets_t).order_by(datasets_t.c.created_at.desc()))]  # type: ignore[misc]

    def delete_dataset(self, id: str) -> None:
        with self.tx() as db:
            db.execute(sa.delete(datasets_t).where(datasets_t.c.id == id))

    # ---- jobs ---------------------------------------------------------------------------
    def create_job(self, id: str, model_name: str, spec: JobSpec, resumes_job_id: str | None = None) -> JobRecord | None:
        """Insert a QUEUED job unless it trains and the model already has an active training
        job (then None); batch predictions run beside anything. The database enforces the rule
        (a unique partial index), so two daemons inserting at once cannot both succeed."""
        now = time.time()
        row = dict(id=id, model_name=model_name, kind=spec.kind, state="QUEUED", created_at=now, updated_at=now,
                   spec=spec.to_json(), resumes_job_id=resumes_job_id, cancel_requested=False)
        try:
            with self.tx() as db:
                db.execute(sa.insert(jobs_t).values(**row))
        except sa.exc.IntegrityError:
            if spec.kind in TRAINING_KINDS and self.active_job(model_name) is not None:
                return None
            raise
        return self.job(id)

    def job(self, id: str) -> JobRecord | None:
        return _job(self._one(sa.select(jobs_t).where(jobs_t.c.id == id)))

    def jobs(self, model_name: str | None = None, limit: int = 100, kinds: tuple[str, ...] = JOB_KINDS) -> list[JobRecord]:
        """The newest ``limit`` jobs (of ``model_name``; of ``kinds``), newest first."""
        q = sa.select(jobs_t).where(jobs_t.c.kind.in_(kinds))
        if model_name:
            q = q.where(jobs_t.c.model_name == model_name)
        return [_job(r) for r in self._all(q.order_by(jobs_t.c.created_at.desc()).limit(limit))]  # type: ignore[misc]

    def jobs_in(self, *states: str, owner: str | None = None) -> list[JobRecord]:
        """Jobs in ``states`` (and, given, claimed by ``owner``), oldest first."""
        q = sa.select(jobs_t).where(jobs_t.c.state.in_(states))
        if owner is not None:
            q = q.where(jobs_t.c.owner == owner)
        return [_job(r) for r in self._all(q.order_by(jobs_t.c.created_at))]  # type: ignore[misc]

    def update_job(self, id: str, *, event: dict[str, Any] | None = None, **fields: Any) -> None:
        """Change a job's fields and, with ``event``, append that event in the same
        transaction (a watcher that sees the new state also sees its event)."""
        fields["updated_at"] = time.time()
        with self.tx() as db:
            db.execute(sa.update(jobs_t).where(jobs_t.c.id == id).values(**fields))
            if event is not None:
                self._append(db, id, event)

    def insert_job(self, row: dict[str, Any]) -> None:
        """A job row as it was (``rebuild`` restores jobs from files); its spec a JobSpec of its kind."""
        row = {"cancel_requested": False, **row, "spec": row["spec"].to_json()}
        with self.tx() as db:
            db.execute(self._insert(jobs_t).values(**row).on_conflict_do_nothing())

    def active_job(self, model_name: str, kinds: tuple[str, ...] = TRAINING_KINDS) -> JobRecord | None:
        """A queued or running job of ``model_name`` (by default one that trains it)."""
        q = sa.select(jobs_t).where(jobs_t.c.model_name == model_name, jobs_t.c.state.in_(ACTIVE_STATES), jobs_t.c.kind.in_(kinds))
        return _job(self._one(q))

    def claim_job(self, id: str, owner: str, lease_s: float, **fields: Any) -> bool:
        """Take the QUEUED job ``id`` for ``owner`` (RUNNING, leased for ``lease_s``): a
        compare-and-set, so of daemons racing for one job exactly one gets True."""
        now = time.time()
        q = (sa.update(jobs_t).where(jobs_t.c.id == id, jobs_t.c.state == "QUEUED", jobs_t.c.owner.is_(None))
             .values(state="RUNNING", owner=owner, lease_until=now + lease_s, updated_at=now, **fields))
        with self.tx() as db:
            return db.execute(q).rowcount == 1

    def renew_leases(self, owner: str, lease_s: float) -> list[str]:
        """Extend ``owner``'s leases on its RUNNING jobs; the ids of those whose cancel was asked."""
        with self.tx() as db:
            db.execute(sa.update(jobs_t).where(jobs_t.c.owner == owner, jobs_t.c.state == "RUNNING").values(lease_until=time.time() + lease_s))
            q = sa.select(jobs_t.c.id).where(jobs_t.c.owner == owner, jobs_t.c.state == "RUNNING", jobs_t.c.cancel_requested)
            return [r.id for r in db.execute(q)]

    def expired_jobs(self, now: float | None = None) -> list[JobRecord]:
        """RUNNING jobs whose owner stopped renewing their lease (it died)."""
        q = sa.select(jobs_t).where(jobs_t.c.state == "RUNNING", jobs_t.c.lease_until < (now or time.time()))
        return [_job(r) for r in self._all(q.order_by(jobs_t.c.created_at))]  # type: ignore[misc]

    def settle_job(self, id: str, expect: tuple[str, ...], event: dict[str, Any], *, owner: str | None = None, **fields: Any) -> bool:
        """Move job ``id`` to its final fields with ``event`` only if its state is still one of
        ``expect`` (and, given, ``owner`` still holds it): a compare-and-set, so of daemons
        settling one job, one wins."""
        fields["updated_at"] = time.time()
        q = sa.update(jobs_t).where(jobs_t.c.id == id, jobs_t.c.state.in_(expect))
        if owner is not None:
            q = q.where(jobs_t.c.owner == owner)
        with self.tx() as db:
            if db.execute(q.values(**fields)).rowcount != 1:
                return False
            self._append(db, id, event)
            return True

    def take_over(self, id: str, owner: str | None, by: str, lease_s: float, *, expired_before: float | None = None) -> bool:
        """Make ``by`` the holder of the RUNNING job ``id`` still held by ``owner`` (a dead
        daemon's; None: a row from before owners), with a lease of ``lease_s``; given
        ``expired_before``, only if its lease ran out before then. A compare-and-set: of
        daemons settling a dead daemon's job, one gets True (and settles it)."""
        now = time.time()
        q = sa.update(jobs_t).where(jobs_t.c.id == id, jobs_t.c.state == "RUNNING",
                                    jobs_t.c.owner.is_(None) if owner is None else jobs_t.c.owner == owner)
        if expired_before is not None:
            q = q.where(jobs_t.c.lease_until < expired_before)
        with self.tx() as db:
            return db.execute(q.values(owner=by, lease_until=now + lease_s, updated_at=now)).rowcount == 1

    def request_cancel(self, id: str) -> None:
        with self.tx() as db:
            db.execute(sa.update(jobs_t).where(jobs_t.c.id == id).values(cancel_requested=True, updated_at=time.time()))

    def append_event(self, job_id: str, event: dict[str, Any]) -> int:
        with self.tx() as db:
            return self._append(db, job_id, event)

    def _append(self, db: sa.Connection, job_id: str, event: dict[str, Any]) -> int:
        if not self.is_sqlite:  # appenders of one job take turns (SQLite's BEGIN IMMEDIATE already serializes)
            db.execute(sa.select(jobs_t.c.id).where(jobs_t.c.id == job_id).with_for_update())
        seq = db.execute(sa.select(sa.func.coalesce(sa.func.max(events_t.c.seq), 0) + 1).where(events_t.c.job_id == job_id)).scalar_one()
        db.execute(sa.insert(events_t).values(job_id=job_id, seq=seq, time=time.time(), event=json.dumps(event)))
        return seq

    def last_event(self, job_id: str) -> tuple[int, float, dict[str, Any]] | None:
        r = self._one(sa.select(events_t).where(events_t.c.job_id == job_id).order_by(events_t.c.seq.desc()).limit(1))
        return None if r is None else (r.seq, r.time, json.loads(r.event))

    def events(self, job_id: str, after_seq: int = 0) -> list[tuple[int, float, dict[str, Any]]]:
        q = sa.select(events_t).where(events_t.c.job_id == job_id, events_t.c.seq > after_seq).order_by(events_t.c.seq)
        return [(r.seq, r.time, json.loads(r.event)) for r in self._all(q)]

    # ---- daemons ------------------------------------------------------------------------
    def heartbeat(self, id: str, host: str, pid: int, address: str, started_at: float) -> None:
        q = self._insert(daemons_t).values(id=id, host=host, pid=pid, address=address, started_at=started_at, heartbeat_at=time.time())
        with self.tx() as db:
            db.execute(q.on_conflict_do_update(index_elements=["id"], set_={c: q.excluded[c] for c in DAEMON_FIELDS}))

    def daemons(self, alive_within_s: float | None = None) -> list[DaemonRecord]:
        q = sa.select(daemons_t).order_by(daemons_t.c.id)
        if alive_within_s is not None:
            q = q.where(daemons_t.c.heartbeat_at >= time.time() - alive_within_s)
        return [_record(DaemonRecord, r) for r in self._all(q)]

    def forget_daemon(self, id: str) -> None:
        with self.tx() as db:
            db.execute(sa.delete(daemons_t).where(daemons_t.c.id == id))

    # ---- artifacts ----------------------------------------------------------------------
    def add_artifact(
        self, id: str, kind: str, model_name: str, version: int, path: str, files: list[str], size: int, created_at: float | None = None
    ) -> None:
        q = self._insert(artifacts_t).values(
            id=id, kind=kind, model_name=model_name, version=version, path=path, files=json.dumps(files), size_bytes=size,
            created_at=created_at or time.time(),
        )
        with self.tx() as db:
            db.execute(q.on_conflict_do_nothing())

    def delete_artifact(self, id: str) -> None:
        with self.tx() as db:
            db.execute(sa.delete(artifacts_t).where(artifacts_t.c.id == id))

    def artifact(self, id: str) -> ArtifactRecord | None:
        return _artifact(self._one(sa.select(artifacts_t).where(artifacts_t.c.id == id)))

    def artifacts(self, model_name: str | None = None) -> list[ArtifactRecord]:
        q = sa.select(artifacts_t).order_by(artifacts_t.c.created_at)
        if model_name is not None:
            q = q.where(artifacts_t.c.model_name == model_name)
        return [_artifact(r) for r in self._all(q)]  # type: ignore[misc]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        cur.execute(f"PRAGMA {pragma}")
    cur.close()
