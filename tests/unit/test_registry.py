"""The registry alone: a WAL checkpoint on close, migration of older schemas, refusal of newer ones."""

import sqlite3

import pytest

from emberd.registry import SCHEMA, SCHEMA_VERSION, Registry, RegistryTooNew


def test_registry_checkpoints_on_close_and_migrates_old_schemas(tmp_path):
    path = tmp_path / "registry.sqlite"
    db = sqlite3.connect(path)  # a registry as the first release wrote it: no user_version
    db.executescript(SCHEMA)
    db.execute("INSERT INTO versions (model_name, version, created_at) VALUES ('m', 1, 0)")
    db.commit()
    db.close()
    r = Registry(path)
    assert r.schema_version == SCHEMA_VERSION
    assert r.versions("m")[0]["run_id"] is None
    r.add_dataset("a" * 64, "t", "parquet", 1, 1, ["x"])
    r.close()
    wal = tmp_path / "registry.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    wal.unlink(missing_ok=True)  # losing the WAL after a clean stop loses nothing
    assert Registry(path).dataset("a" * 64) is not None
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RegistryTooNew, match="newer emberd"):  # refused, never "repaired"
        Registry(path)

