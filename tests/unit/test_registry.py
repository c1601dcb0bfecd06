"""The registry alone, on both stores (SQLite, and a real PostgreSQL server the tests start):
records round-trip, one active training job per model, jobs claimed exactly once by racing
claimers, leases renewed and expired, schemas migrated by Alembic (pre-Alembic SQLite files
included) and newer ones refused."""

import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from emberd.jobspec import JobSpec
from emberd.registry import SCHEMA, Registry, RegistryOutdated, RegistryTooNew
from tests.unit.test_jobspec import BATCH as BATCH_JSON
from tests.unit.test_jobspec import FIT as FIT_JSON

FIT = JobSpec.from_dict(FIT_JSON, kind="FIT")
BATCH = JobSpec.from_dict(BATCH_JSON, kind="BATCH_PREDICT")


def test_records_round_trip_on_both_stores(registry_target):
    r = Registry(registry_target)
    r.upsert_model("m", "y", "binary", "accuracy")
    r.upsert_model("m", "y", "multiclass", "f1")  # an upsert keeps the label and creation time
    assert (r.model("m").problem_type, r.model("m").eval_metric) == ("multiclass", "f1")
    r.add_version("m", 1, parent_version=None, val_score=0.5, run_id="run-a")
    r.add_version("m", 1, parent_version=None, val_score=0.75, run_id="run-a")  # rewritten whole, not duplicated
    r.add_version("m", 2, parent_version=1, val_score=0.8)
    assert [(v.version, v.val_score, v.parent_version) for v in r.versions("m")] == [(1, 0.75, None), (2, 0.8, 1)]
    assert r.latest_version("m") == 2 and r.latest_version("nope") is None
    r.set_alias("m", "prod", 1)
    r.set_alias("m", "prod", 2)
    assert r.aliases("m") == {"prod": 2} and r.delete_alias("m", "prod") and not r.delete_alias("m", "prod")
    r.add_dataset("a" * 64, "t.csv", "csv", 10 * 2**31, 3, ["x", "y"])  # sizes past 32 bits
    r.add_dataset("a" * 64, "again", "csv", 1, 1, ["z"])  # content-addressed: the first row stays
    assert r.dataset("a" * 64).columns == ("x", "y") and r.dataset("a" * 64).size_bytes == 10 * 2**31
    r.add_artifact("x" * 32, "dump", "m", 2, "/p", ["a.bin", "b/c.json"], 7)
    assert r.artifact("x" * 32).files == ("a.bin", "b/c.json") and [a.id for a in r.artifacts("m")] == ["x" * 32]
    job = r.create_job("j1", "m", FIT)
    assert job.state == "QUEUED" and job.spec == FIT and not job.cancel_requested and job.owner is None
    assert r.append_event("j1", {"kind": "state", "state": "QUEUED"}) == 1
    r.update_job("j1", state="FAILED", error="boom", event={"kind": "state", "state": "FAILED"})
    assert [e[2]["state"] for e in r.events("j1")] == ["QUEUED", "FAILED"] and r.last_event("j1")[0] == 2
    assert r.counts() == {"models": 1, "versions": 2, "datasets": 1, "jobs": 1, "artifacts": 1}
    r.delete_model("m")
    assert r.model("m") is None and r.versions("m") == [] and r.artifacts("m") == []
    r.close()


def test_one_active_training_job_per_model_even_when_daemons_race(registry_target):
    r = Registry(registry_target)
    others = [Registry(registry_target) for _ in range(3)]  # as separate daemons would: own pools
    results: list = []
    barrier = threading.Barrier(8)

    def insert(reg, i):
        barrier.wait()
        results.append(reg.create_job(f"fit-{i}", "m", FIT))

    threads = [threading.Thread(target=insert, args=((others + [r])[i % 4], i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(j is not None for j in results) == 1, "exactly one of the racing fits was queued"
    assert r.create_job("batch-1", "m", BATCH) is not None  # a batch prediction runs beside it
    winner = next(j for j in results if j is not None)
    r.update_job(winner.id, state="SUCCEEDED")
    assert r.create_job("fit-after", "m", FIT) is not None  # once it ended, the next one may queue
    for reg in (r, *others):
        reg.close()


def test_racing_daemons_claim_each_job_exactly_once_and_leases_expire(registry_target):
    r = Registry(registry_target)
    for i in range(20):
        assert r.create_job(f"b{i:02d}", f"model-{i}", BATCH)
    daemons = {name: Registry(registry_target) for name in ("A", "B", "C")}
    claimed: dict[str, list[str]] = {name: [] for name in daemons}
    barrier = threading.Barrier(len(daemons))

    def claim(name):
        barrier.wait()
        for job in daemons[name].jobs_in("QUEUED"):
            if daemons[name].claim_job(job.id, name, lease_s=30):
                claimed[name].append(job.id)

    threads = [threading.Thread(target=claim, args=(n,)) for n in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sorted(j for js in claimed.values() for j in js)
    assert everything == [f"b{i:02d}" for i in range(20)], claimed  # all claimed, none twice
    assert {j.owner for j in r.jobs_in("RUNNING")} <= set(daemons)
    assert r.expired_jobs() == []
    # leases: A dies (stops renewing), B renews and sees a cancel asked through any daemon, C renews longer
    for name in daemons:
        assert r.create_job(f"lease-{name}", f"lease-model-{name}", BATCH)
        assert daemons[name].claim_job(f"lease-{name}", name, lease_s=30)
    assert not daemons["A"].claim_job("lease-B", "A", 30), "a running job is not claimable"
    r.request_cancel("lease-B")
    assert daemons["B"].renew_leases("B", lease_s=30) == ["lease-B"]
    daemons["C"].renew_leases("C", lease_s=120)
    later = time.time() + 60
    expired = {j.id for j in r.expired_jobs(now=later)}
    assert {"lease-A", "lease-B"} <= expired and "lease-C" not in expired
    # settling is a compare-and-set: of two daemons finding the same expired job, one wins
    event = {"kind": "state", "state": "INTERRUPTED"}
    wins = [daemons[n].settle_job("lease-A", ("RUNNING",), event, state="INTERRUPTED") for n in ("B", "C")]
    assert wins == [True, False] and r.job("lease-A").state == "INTERRUPTED"
    assert [e[2] for e in r.events("lease-A")] == [event]
    r.heartbeat("A", "host", 1, "127.0.0.1:1", 0.0)
    r.heartbeat("A", "host", 2, "127.0.0.1:1", 1.0)
    assert [(d.id, d.pid) for d in r.daemons(alive_within_s=60)] == [("A", 2)]
    r.forget_daemon("A")
    assert r.daemons() == []
    for reg in (r, *daemons.values()):
        reg.close()


def test_a_newer_schema_is_refused_on_both_stores(registry_target):
    Registry(registry_target).close()
    url = registry_target if isinstance(registry_target, str) else f"sqlite:///{registry_target}"
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num='9999'"))
    engine.dispose()
    with pytest.raises(RegistryTooNew, match="newer emberd"):  # refused, never "repaired"
        Registry(registry_target)


def test_a_shared_registry_behind_is_refused_until_upgraded(postgres_server):
    url = postgres_server.database()
    Registry(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as c:  # as an older emberd left it: revision 0002, without the lease columns
        c.execute(sa.text("DROP TABLE daemons"))
        c.execute(sa.text("DROP INDEX one_active_training_job_per_model"))
        c.execute(sa.text("DROP INDEX jobs_by_state"))
        for col in ("owner", "lease_until", "cancel_requested"):
            c.execute(sa.text(f"ALTER TABLE jobs DROP COLUMN {col}"))
        c.execute(sa.text("UPDATE alembic_version SET version_num='0002'"))
    engine.dispose()
    with pytest.raises(RegistryOutdated, match="emberd registry upgrade"):
        Registry(url)
    from emberd.recovery import cli

    assert cli(["upgrade", "--registry-url", url]) == 0
    r = Registry(url)
    assert r.schema_revision == "0003" and r.create_job("j", "m", FIT).owner is None
    r.close()


def test_a_pre_alembic_sqlite_registry_is_migrated_and_checkpointed_on_close(tmp_path):
    path = tmp_path / "registry.sqlite"
    db = sqlite3.connect(path)  # a registry as the first release wrote it: no user_version
    db.executescript(SCHEMA)
    db.execute("INSERT INTO versions (model_name, version, created_at) VALUES ('m', 1, 0)")
    db.commit()
    db.close()
    r = Registry(path)
    assert r.schema_revision == "0003"
    assert r.versions("m")[0].run_id is None
    r.add_dataset("a" * 64, "t", "parquet", 1, 1, ["x"])
    r.close()
    wal = tmp_path / "registry.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    wal.unlink(missing_ok=True)  # losing the WAL after a clean stop loses nothing
    assert Registry(path).dataset("a" * 64) is not None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3  # pre-Alembic daemons (they read up to 2) refuse it
    db.execute("DROP TABLE alembic_version")
    db.execute("PRAGMA user_version=7")  # a pre-Alembic file from a newer daemon
    db.commit()
    db.close()
    with pytest.raises(RegistryTooNew, match="newer emberd"):
        Registry(path)
