"""Recovery: the registry opened whole or rebuilt, and the daemon's root made to agree with
it before anything is served.

The registry is an index of files that describe themselves: datasets are named by their
sha256 (``datasets/<sha256>.<format>``), artifacts carry ``ember_artifact.json``, model
versions their ``lineage.json`` and ``metrics.json``, models their ``predictor.json``. So a
registry that is damaged (fails ``quick_check``), missing, or emptied (its WAL lost) is
rebuilt from them; what the files cannot say (job event logs, upload display names) is lost
and the log says so. A file whose description is unreadable cannot be rebuilt: the daemon
refuses to start and names ``emberd registry check`` / ``emberd registry rebuild`` (which
moves such files to ``lost+found/`` and rebuilds the rest).

``sweep`` removes what a killed process left half-written: upload temp files, staging
folders (versions, dumps, exports), atomic-write temp files and folders a deletion had
renamed away before it was killed. Several daemons on one root: a daemon that starts while
another one is alive (it heartbeat within three leases and is not certainly dead, see
``emberd.daemons``) skips the sweep and logs it, since the leftovers may be that daemon's
work in progress; the last daemon to start alone sweeps them."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .daemons import live_others
from .engine.model_store import FORMAT, ModelStore
from .engine.storage import read_json, write_json
from .jobspec import JobSpec, TrainSpec
from .registry import Registry, RegistryDamaged, redact

log = logging.getLogger("emberd.recovery")

ARTIFACT_MARKER = "ember_artifact.json"
SHA256_FILE = re.compile(r"^([0-9a-f]{64})\.(parquet|csv|tsv|jsonl)$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HELP = "run `emberd registry check --root ROOT` to see what is wrong, `emberd registry rebuild --root ROOT` to rebuild it"


class Unrecoverable(Exception):
    """Files the registry cannot be rebuilt from (the daemon refuses to start)."""


@dataclass
class Report:
    """What recovery did (logged at start; printed by ``emberd registry``)."""

    rebuilt: list[str] = field(default_factory=list)  # rows re-created from files
    swept: list[str] = field(default_factory=list)  # leftovers removed
    dropped: list[str] = field(default_factory=list)  # rows whose files are gone
    unreadable: list[str] = field(default_factory=list)  # files that cannot be rebuilt from
    notes: list[str] = field(default_factory=list)

    def log(self) -> None:
        for what, items in (("rebuilt", self.rebuilt), ("swept", self.swept), ("dropped", self.dropped)):
            if items:
                log.warning("registry recovery %s %d item(s): %s", what, len(items), "; ".join(items))
        for n in self.notes:
            log.warning("registry recovery: %s", n)


# ---- opening -------------------------------------------------------------------------------
def open_registry(root: Path, report: Report, url: str = "") -> Registry:
    """The registry at ``url`` (PostgreSQL) or at ``root`` (SQLite); a damaged SQLite file is
    moved aside and a fresh one opened (the caller rebuilds its rows from disk)."""
    if url:
        return Registry(url)
    path = root / "registry.sqlite"
    try:
        return Registry(path)
    except RegistryDamaged as e:
        aside = move_aside(path)
        report.notes.append(f"{e}; moved it to {aside.name}* and rebuilt the index from the files under {root}")
        return Registry(path)


def move_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    return aside


# ---- leftovers -----------------------------------------------------------------------------
def _remove(p: Path, report: Report) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
    report.swept.append(str(p))


def _leftover(name: str) -> bool:
    """Hidden names that only a killed process leaves: upload and atomic-write temp files
    (``.upload-*.tmp``, ``.<name>.*.tmp``), staging folders, folders a deletion renamed away."""
    return name.startswith(".") and (name.endswith((".staging", ".tmp")) or ".deleted" in name)


def sweep(root: Path, report: Report) -> None:
    """Remove what killed processes left half-written (only while no worker runs)."""
    models = root / "models"
    folders = [root / "datasets", root / "artifacts", models]
    for model in models.glob("*") if models.is_dir() else []:
        folders += [model, model / "versions", model / "run"]
    for folder in folders:
        for p in folder.glob(".*") if folder.is_dir() else []:
            if _leftover(p.name):
                _remove(p, report)


# ---- rebuilding rows from files ------------------------------------------------------------
def write_artifact_marker(folder: Path, row: Any) -> None:
    write_json(
        folder / ARTIFACT_MARKER,
        {"id": row["id"], "kind": row["kind"], "model_name": row["model_name"], "version": row["version"], "created_at": row["created_at"]},
    )


def record_artifact(registry: Registry, folder: Path) -> dict[str, Any]:
    """Index the published artifact ``folder`` from its marker (its files but the marker);
    the marker's contents."""
    m = read_json(folder / ARTIFACT_MARKER)
    files = sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file() and f.name != ARTIFACT_MARKER)
    size = sum((folder / f).stat().st_size for f in files)
    registry.add_artifact(m["id"], m["kind"], m["model_name"], int(m["version"]), str(folder), files, size, created_at=m.get("created_at"))
    return m


def _dataset_rows(path: Path, fmt: str) -> tuple[int, list[str]]:
    from .datastore import DataStore

    frame = DataStore._read(path, fmt)
    return len(frame), [str(c) for c in frame.columns]


def reconcile_datasets(registry: Registry, root: Path, report: Report) -> None:
    folder = root / "datasets"
    known = {r.id: r for r in registry.datasets()}
    for p in sorted(folder.glob("*")) if folder.is_dir() else []:
        m = SHA256_FILE.match(p.name)
        if not m or m.group(1) in known:
            continue
        try:
            rows, columns = _dataset_rows(p, m.group(2))
        except Exception as e:  # noqa: BLE001 - unreadable: cannot be rebuilt
            report.unreadable.append(f"{p} ({e})")
            continue
        registry.add_dataset(m.group(1), "", m.group(2), p.stat().st_size, rows, columns, created_at=p.stat().st_mtime)
        report.rebuilt.append(f"dataset {m.group(1)[:12]}")
    for id, row in known.items():
        if not (folder / f"{id}.{row.format}").exists():
            registry.delete_dataset(id)
            report.dropped.append(f"dataset {id[:12]} (its file is gone)")


def reconcile_artifacts(registry: Registry, root: Path, report: Report) -> None:
    folder = root / "artifacts"
    known = {r.id: r for r in registry.artifacts()}
    for p in sorted(folder.glob("*")) if folder.is_dir() else []:
        if p.name.startswith(".") or not p.is_dir():
            continue
        row = known.get(p.name)
        if row is not None:
            if not (p / ARTIFACT_MARKER).exists():  # recorded before markers existed
                write_artifact_marker(p, asdict(row))
            continue
        marker = p / ARTIFACT_MARKER
        if not marker.exists():  # published but killed before it was recorded: never handed out
            _remove(p, report)
            continue
        try:
            m = record_artifact(registry, p)
        except Exception as e:  # noqa: BLE001
            report.unreadable.append(f"{marker} ({e})")
            continue
        report.rebuilt.append(f"artifact {p.name[:12]} ({m['kind']} of {m['model_name']} v{m['version']})")
    for id, row in known.items():
        if not Path(row.path).is_dir():
            registry.delete_artifact(id)
            report.dropped.append(f"artifact {id[:12]} (its folder is gone)")


def reconcile_models(registry: Registry, root: Path, report: Report) -> None:
    """Models and versions from their folders; jobs that published a version, from its
    lineage (SUCCEEDED); an interrupted run with no job row, as an INTERRUPTED job."""
    folder = root / "models"
    for d in sorted(folder.glob("*")) if folder.is_dir() else []:
        if not MODEL_NAME.match(d.name) or not (d / "predictor.json").exists():
            continue
        store = ModelStore(d)
        try:
            meta = store.meta()
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')}")
        except Exception as e:  # noqa: BLE001
            report.unreadable.append(f"{store.meta_path} ({e})")
            continue
        try:
            settled = store.settle_run()
        except Exception as e:  # noqa: BLE001
            report.unreadable.append(f"{store.run_dir / 'run.json'} ({e})")
            continue
        if settled is not None:
            report.notes.append(f"model {d.name!r}: its run was killed after publishing version {settled}; made it current")
        if registry.model(d.name) is None:
            if not store.versions() and not (store.run_dir / "run.json").exists():
                continue
            registry.upsert_model(d.name, meta["label"], meta["problem_type"], meta["eval_metric"])
            report.rebuilt.append(f"model {d.name!r}")
        known = {r.version for r in registry.versions(d.name)}
        for v in store.versions():
            if v in known:
                continue
            try:
                lineage = read_json(store.version_dir(v) / "lineage.json")
                metrics = read_json(store.version_dir(v) / "metrics.json")
            except Exception as e:  # noqa: BLE001
                report.unreadable.append(f"{store.version_dir(v)} ({e})")
                continue
            add_version_row(registry, d.name, v, lineage, metrics)
            report.rebuilt.append(f"version {d.name}@{v}")
            job_id = lineage.get("job_id")
            if job_id and registry.job(job_id) is None:
                t = lineage.get("created_at") or time.time()
                kind = "FIT" if job_id == lineage.get("run_id") else "RESUME"
                registry.insert_job({
                    "id": job_id, "model_name": d.name, "kind": kind,
                    "state": "SUCCEEDED", "created_at": t, "updated_at": t, "spec": JobSpec(kind, TrainSpec(rebuilt=True)), "version": v,
                    "error": "rebuilt from the version's lineage after the registry was lost; its event log is gone",
                })
                report.rebuilt.append(f"job {job_id[:8]} (SUCCEEDED, {d.name}@{v})")
        run_path = store.run_dir / "run.json"
        if run_path.exists():
            try:
                run = read_json(run_path)
            except Exception as e:  # noqa: BLE001
                report.unreadable.append(f"{run_path} ({e})")
                continue
            job_id = run.get("job_id") or run.get("run_id")
            if run.get("status") == "running" and job_id and registry.job(job_id) is None and not registry.jobs(d.name, limit=1):
                t = run.get("started_at") or time.time()
                registry.insert_job({
                    "id": job_id, "model_name": d.name, "kind": "FIT", "state": "INTERRUPTED", "created_at": t, "updated_at": t,
                    "spec": JobSpec("FIT", TrainSpec(rebuilt=True, model_dir=str(d), scale=run.get("scale"))),
                    "error": "rebuilt after the registry was lost: Resume continues it from its last checkpoint (give train_data again)",
                })
                report.rebuilt.append(f"job {job_id[:8]} (INTERRUPTED run of {d.name!r})")
    for row in registry.models():
        # no folder and no queued first fit: a DeleteModel killed after its rename, or a model
        # whose first fit never wrote anything
        if not (folder / row.name).exists() and not any(j.model_name == row.name for j in registry.jobs_in("QUEUED")):
            registry.delete_model(row.name)
            report.dropped.append(f"model {row.name!r} (it has no folder)")


def add_version_row(registry: Registry, name: str, v: int, lineage: dict[str, Any], metrics: dict[str, Any]) -> None:
    forgetting = metrics.get("forgetting") or {}
    registry.add_version(
        name,
        v,
        parent_version=lineage.get("parent_version"),
        val_score=metrics.get("val_score"),
        train_digest=lineage.get("train_digest"),
        job_id=lineage.get("job_id"),
        run_id=lineage.get("run_id"),
        created_at=lineage.get("created_at", time.time()),
        forgetting_before=forgetting.get("before"),
        forgetting_after=forgetting.get("after"),
    )


def recover(
    root: Path, *, url: str = "", quarantine: bool = False, daemon_id: str = "", lease_s: float = 30.0
) -> tuple[Registry, Report]:
    """Open (or rebuild) the registry (``url``, else SQLite at ``root``) and make it agree with
    the files at ``root``. Unreadable files raise ``Unrecoverable``, or with ``quarantine``
    move to ``lost+found/``. The sweep is skipped while daemons other than ``daemon_id``
    heartbeat (within three leases of ``lease_s``)."""
    report = Report()
    registry = open_registry(root, report, url)
    others = live_others(registry.daemons(alive_within_s=3 * lease_s), daemon_id)
    if others:
        report.notes.append(
            f"did not sweep leftovers under {root}: other daemons use it ({', '.join(f'{d.id} on {d.host}' for d in others)}); "
            "the first daemon to start alone sweeps them"
        )
    else:
        sweep(root, report)
    reconcile_datasets(registry, root, report)
    reconcile_models(registry, root, report)
    reconcile_artifacts(registry, root, report)
    if report.unreadable:
        if not quarantine:
            registry.close()
            raise Unrecoverable(
                f"emberd cannot rebuild its registry from these files under {root}: {'; '.join(report.unreadable)}. {HELP} "
                "(rebuild moves them to lost+found/)"
            )
        lost = root / "lost+found"
        lost.mkdir(exist_ok=True)
        for item in report.unreadable:
            src = Path(item.split(" (", 1)[0])
            target = src.parent if src.name in ("predictor.json", "run.json", ARTIFACT_MARKER) else src
            if target.exists():
                os.replace(target, lost / f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}")
                report.notes.append(f"moved {target} to {lost}")
    return registry, report


# ---- emberd registry check | rebuild ---------------------------------------------------------
def check(root: Path, url: str = "") -> list[str]:
    """What is wrong with the registry (``url``, else SQLite at ``root``; nothing is changed):
    an empty list is a registry that opens, passes ``quick_check`` (SQLite) and indexes
    exactly the files at ``root``."""
    if url:
        try:
            registry = Registry(url, upgrade=False)
        except Exception as e:  # noqa: BLE001 - reported, not raised: this is the check
            return [f"{redact(url)} cannot be opened: {e}"]
        try:
            datasets = {r.id: r.format for r in registry.datasets()}
            versions = {(m.name, v.version) for m in registry.models() for v in registry.versions(m.name)}
            artifacts = {r.id: r.path for r in registry.artifacts()}
        finally:
            registry.close()
        return _disagreements(root, datasets, versions, artifacts)
    import sqlite3

    path = root / "registry.sqlite"
    if not path.exists():
        return [f"{path} is missing"]
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
            if result != ["ok"]:
                return [f"{path} fails quick_check: {'; '.join(result[:5])}"]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"models", "versions", "datasets", "jobs", "artifacts"} <= tables:
                return [f"{path} lacks tables: {sorted({'models', 'versions', 'datasets', 'jobs', 'artifacts'} - tables)}"]
            datasets = {r[0]: r[1] for r in db.execute("SELECT id, format FROM datasets")}
            versions = {(r[0], r[1]) for r in db.execute("SELECT model_name, version FROM versions")}
            artifacts = {r[0]: r[1] for r in db.execute("SELECT id, path FROM artifacts")}
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return [f"{path} cannot be read: {e}"]
    return _disagreements(root, datasets, versions, artifacts)


def _disagreements(root: Path, datasets: dict[str, str], versions: set[tuple[str, int]], artifacts: dict[str, str]) -> list[str]:
    """Where the files at ``root`` and the registry's rows disagree."""
    problems: list[str] = []
    for p in (root / "datasets").glob("*"):
        m = SHA256_FILE.match(p.name)
        if m and m.group(1) not in datasets:
            problems.append(f"dataset file {p.name} has no record")
    for d in (root / "models").glob("*"):
        if MODEL_NAME.match(d.name) and (d / "predictor.json").exists():
            for v in ModelStore(d).versions():
                if (d.name, v) not in versions:
                    problems.append(f"version {d.name}@{v} has no record")
    for (name, v) in sorted(versions):
        if not ModelStore(root / "models" / name).version_dir(v).is_dir():
            problems.append(f"version {name}@{v} is recorded but its folder is gone")
    for p in (root / "artifacts").glob("*"):
        if p.is_dir() and not p.name.startswith(".") and p.name not in artifacts:
            problems.append(f"artifact folder {p.name} has no record")
    problems += [f"dataset {id} is recorded but its file is gone" for id, fmt in datasets.items() if not (root / "datasets" / f"{id}.{fmt}").exists()]
    problems += [f"artifact {id} is recorded but its folder is gone" for id, path in artifacts.items() if not Path(path).is_dir()]
    problems += [f"leftover {p}" for folder in (root / "datasets", root / "artifacts", root / "models") for p in folder.glob(".*") if _leftover(p.name)]
    return problems


def cli(argv: list[str]) -> int:
    """``emberd registry check|rebuild|upgrade [--root ROOT] [--registry-url URL]`` (check and
    rebuild with the daemons stopped; upgrade with those of an older release stopped)."""
    import argparse

    from .settings import Settings

    ap = argparse.ArgumentParser(prog="emberd registry", description="check, rebuild or upgrade the daemon's registry")
    ap.add_argument("action", choices=("check", "rebuild", "upgrade"))
    ap.add_argument("--root", default=os.environ.get("EMBER_ROOT", Settings().root), help="the daemon's root folder")
    ap.add_argument("--registry-url", default=os.environ.get("EMBER_REGISTRY_URL", ""),
                    help="a PostgreSQL registry (postgresql+psycopg://...); default: registry.sqlite under --root")
    args = ap.parse_args(argv)
    root, url = Path(args.root), args.registry_url
    where = redact(url) if url else str(root / "registry.sqlite")
    if args.action == "upgrade":
        registry = Registry(url or root / "registry.sqlite", upgrade=True)
        print(f"registry at {where} is at schema revision {registry.schema_revision}")
        registry.close()
        return 0
    if args.action == "check":
        problems = check(root, url)
        for p in problems:
            print(f"problem: {p}")
        print("registry OK" if not problems else f"{len(problems)} problem(s); `emberd registry rebuild` (same flags) fixes them")
        return 1 if problems else 0
    path = root / "registry.sqlite"
    if not url and path.exists():
        aside = move_aside(path)
        print(f"moved the old registry to {aside.name}*")
    registry, report = recover(root, url=url, quarantine=True)
    registry.close()
    for what, items in (("rebuilt", report.rebuilt), ("swept", report.swept), ("dropped", report.dropped), ("unreadable", report.unreadable)):
        for item in items:
            print(f"{what}: {item}")
    for n in report.notes:
        print(n)
    print(f"registry rebuilt at {where}")
    return 0
