"""The catalog: the models this daemon holds, their versions and aliases, as the registry
indexes them and the files under ``models/`` hold them. Reading a model's view, resolving a
version or alias, aliases (``production`` -> version 3; rollback = moving the alias),
DeleteVersion, retention (``keep_versions``), DeleteModel, finding the version a job
published (exactly-once: the version records its job's id), and adopting folders that a
multi-node fit wrote while no daemon job covered them.

Aliases are written to ``models/<name>/aliases.json`` (atomic) and the registry, so a
rebuilt registry gets them back. ``latest`` is implicit: the current version."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from ..cache import ModelCache
from ..engine.config import Config
from ..engine.data import Schema
from ..engine.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from ..engine.model_store import ModelStore
from ..engine.storage import read_json, write_json
from ..recovery import add_version_row
from ..registry import JOB_KINDS, Registry
from ..settings import Settings
from .domain import NAME, JobRecord, ModelRecord, check_name

log = logging.getLogger("emberd.catalog")

LATEST = "latest"
_ALIASES = threading.Lock()  # a model's aliases.json is written in the order its changes commit
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")


class Catalog:
    def __init__(self, settings: Settings, registry: Registry, cache: ModelCache, models_dir: Path, artifacts_dir: Path) -> None:
        self.settings, self.registry, self.cache = settings, registry, cache
        self.models_dir, self.artifacts_dir = models_dir, artifacts_dir

    def start(self) -> None:
        """Adopt unindexed model folders; index versions and aliases the registry lacks."""
        self.adopt_models()
        for row in self.registry.models():
            self.sync_versions(row.name)
            self.restore_aliases(row.name)

    # ---- models on disk ---------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.models_dir / check_name(name)

    def store(self, name: str) -> ModelStore:
        return ModelStore(self.model_dir(name))

    def models(self) -> list[ModelRecord]:
        self.adopt_models()  # a multi-node fit may have published since the last look
        return self.registry.models()

    def require_model(self, name: str) -> ModelRecord:
        row = self.registry.model(check_name(name))
        if row is None and self.adopt(name):
            row = self.registry.model(name)
        if row is None:
            raise NotFound(f"no model named {name!r}; ListModels shows the models this daemon holds")
        return row

    def current_version(self, name: str) -> int:
        store = self.store(name)
        return (store.meta().get("current_version") or 0) if store.exists() else 0

    def current_schema(self, name: str) -> tuple[Schema, Config] | None:
        v = self.current_version(name)
        if not v:
            return None
        d = self.store(name).version_dir(v)
        return Schema.from_json(read_json(d / "schema.json")), Config.from_dict(read_json(d / "config.json"))

    def version_schema(self, name: str, version: int) -> Schema:
        return Schema.from_json(read_json(self.store(name).version_dir(version) / "schema.json"))

    def record_model(self, name: str) -> None:
        """The model's registry row from its ``predictor.json``."""
        meta = self.store(name).meta()
        self.registry.upsert_model(name, meta["label"], meta["problem_type"], meta["eval_metric"])

    def sync_versions(self, name: str, job_id: str | None = None) -> None:
        """Index the versions on disk the registry lacks (the one a job just wrote, with its
        ``job_id``; after a restart, any a worker published before the daemon recorded it)."""
        store = self.store(name)
        known = {r.version for r in self.registry.versions(name)}
        for v in store.versions():
            if v in known:
                continue
            d = store.version_dir(v)
            lineage = read_json(d / "lineage.json")
            add_version_row(self.registry, name, v, {"job_id": job_id, **lineage} if job_id and not lineage.get("job_id") else lineage,
                            read_json(d / "metrics.json"))

    def adopt_models(self) -> None:
        """Index the finished predictor folders under ``models/`` that the registry lacks:
        those a multi-node fit (torchrun or SLURM running ``python -m emberd.worker``) wrote
        into this root on a shared filesystem while no daemon job covered them."""
        known = {m.name for m in self.registry.models()}
        for d in sorted(self.models_dir.iterdir()):
            if d.name not in known:
                self.adopt(d.name)

    def adopt(self, name: str) -> bool:
        """Index ``models/<name>`` if it is a finished predictor folder the registry lacks
        (its versions too): so a call naming a model that a torchrun/SLURM fit just published
        finds it at once, on any daemon sharing the root."""
        d = self.models_dir / name
        if not (NAME.fullmatch(name) and (d / "predictor.json").exists()) or self.registry.model(name) is not None:
            return False
        try:
            if not ModelStore(d).meta().get("current_version"):
                return False  # still training (or unfinished): its job, if any, records it
        except (OSError, ValueError, FailedPrecondition):
            return False
        self.record_model(name)
        self.sync_versions(name)
        log.info("adopted model %r (published under models/ by a fit outside this daemon)", name)
        return True

    def model_info(self, name: str) -> dict[str, Any]:
        """The model's record with its versions, aliases, classes and state."""
        row = self.require_model(name)
        if self.registry.active_job(name) is None:
            self.sync_versions(name)  # versions a multi-node fit added to a known model
        schema = self.current_schema(name)
        current = self.current_version(name)
        training = self.registry.active_job(name) is not None
        return {
            "model": row,
            "current_version": current,
            "versions": self.registry.versions(name),
            "training": training,
            "aliases": self.registry.aliases(name),
            "classes": [str(c) for c in schema[0].classes] if schema else [],
            "state": "READY" if current else "TRAINING" if training else "UNFINISHED",
        }

    # ---- versions ---------------------------------------------------------------------------
    def require_version(self, name: str, version: int = 0, alias: str = "") -> int:
        """``version``, or the one ``alias`` names (neither: the current one) of ``name``;
        its files must be on disk (DATA_LOSS naming the first one missing)."""
        self.require_model(name)
        if alias and version:
            raise InvalidArgument("give a version or an alias, not both")
        v = self.resolve_alias(name, alias) if alias else (version or self.current_version(name))
        if not v:
            raise FailedPrecondition(f"model {name!r} has no trained version yet; wait for its fit to finish")
        if v not in self.store(name).versions():
            raise NotFound(f"model {name!r} has no version {v}; versions: {self.store(name).versions()}")
        try:
            self.store(name).check_version_files(v)
        except DataLoss:
            self.cache.drop(name, v)  # never serve weights that are gone
            raise
        return v

    def published_version(self, job: JobRecord) -> int | None:
        """The version ``job`` published, if it did (settling a run killed after its
        rename: current version, run.json, registry row)."""
        store = self.store(job.model_name)
        if not store.exists():
            return None
        store.settle_run()
        if self.registry.model(job.model_name) is None:
            self.record_model(job.model_name)
        self.sync_versions(job.model_name)
        return next((r.version for r in self.registry.versions(job.model_name) if r.job_id == job.id), None)

    def after_run(self, name: str, state: str) -> None:
        """A run that ended for good frees its checkpoint; a new version may retire old ones
        (called just before its job's final ``state`` is recorded)."""
        store = self.store(name)
        if state in ("SUCCEEDED", "FAILED"):  # only INTERRUPTED and CANCELLED runs resume
            (store.run_dir / "last.ckpt").unlink(missing_ok=True)
        if state == "SUCCEEDED" and self.settings.keep_versions > 0:
            self.apply_retention(name)

    def _pinned(self, name: str) -> dict[int, list[str]]:
        pins: dict[int, list[str]] = {}
        for alias, v in self.registry.aliases(name).items():
            pins.setdefault(v, []).append(alias)
        pins.setdefault(self.current_version(name), []).append(LATEST)
        run = self.store(name).run_dir / "run.json"
        if run.exists():
            r = read_json(run)
            if r.get("status") == "running" and r.get("parent_version"):  # Resume starts from it
                pins.setdefault(r["parent_version"], []).append("the interrupted run (Resume)")
        return pins

    def delete_version(self, name: str, version: int) -> None:
        """Remove one version (record, then files; its artifacts stay); refused for one an
        alias (or ``latest``) names, and while the model trains (a fit may read its parent)."""
        self.require_model(name)
        busy = self.registry.active_job(name, kinds=JOB_KINDS)
        if busy:
            raise FailedPrecondition(
                f"model {name!r} has a {busy.kind} job ({busy.id}) queued or running; wait for it or CancelJob it before deleting a version"
            )
        store = self.store(name)
        if version not in store.versions():
            raise NotFound(f"model {name!r} has no version {version}; versions: {store.versions()}")
        pins = self._pinned(name).get(version)
        if pins:
            raise FailedPrecondition(
                f"version {version} of {name!r} is what {', '.join(repr(p) for p in pins)} names; "
                "move the alias (SetAlias), train a newer version or finish the run first"
            )
        self.cache.drop(name, version)
        self.registry.delete_version(name, version)
        store.delete_version(version)

    def apply_retention(self, name: str) -> list[int]:
        """Delete all but the newest ``keep_versions`` versions (aliased and current kept)."""
        keep = self.settings.keep_versions
        versions = self.store(name).versions()
        pinned = self._pinned(name)
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in pinned]
        for v in doomed:
            self.cache.drop(name, v)
            self.registry.delete_version(name, v)
            self.store(name).delete_version(v)
        if doomed:
            log.info("retention (keep %d): deleted %s versions %s", keep, name, doomed)
        return doomed

    # ---- aliases ----------------------------------------------------------------------------
    def _write_aliases(self, name: str) -> None:
        write_json(self.store(name).path / "aliases.json", self.registry.aliases(name))

    def restore_aliases(self, name: str) -> None:
        """Aliases from ``aliases.json`` the registry lacks (after a rebuild)."""
        path = self.store(name).path / "aliases.json"
        if path.exists() and not self.registry.aliases(name):
            versions = set(self.store(name).versions())
            for alias, v in read_json(path).items():
                if v in versions:
                    self.registry.set_alias(name, alias, int(v))

    def resolve_alias(self, name: str, alias: str) -> int:
        if alias == LATEST:
            return self.current_version(name)
        v = self.registry.aliases(name).get(alias)
        if v is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}; aliases: {sorted(self.registry.aliases(name))} (and {LATEST!r})")
        return v

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.require_model(name)
        if alias == LATEST:
            raise InvalidArgument(f"{LATEST!r} always names the current version; choose another alias")
        if not ALIAS.match(alias or ""):
            raise InvalidArgument(f"alias {alias!r} is not valid: 1-64 letters, digits, '.', '_' or '-', starting with a letter")
        if version not in self.store(name).versions():
            raise NotFound(f"model {name!r} has no version {version}; versions: {self.store(name).versions()}")
        with _ALIASES:
            self.registry.set_alias(name, alias, version)
            self._write_aliases(name)

    def delete_alias(self, name: str, alias: str) -> None:
        self.require_model(name)
        with _ALIASES:
            if not self.registry.delete_alias(name, alias):
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            self._write_aliases(name)

    # ---- deletion ---------------------------------------------------------------------------
    def delete_model(self, name: str) -> None:
        """The model, its versions and its artifacts: each folder renamed away first (a
        restart sweeps what a kill left), then the records, then the files."""
        self.require_model(name)
        busy = self.registry.active_job(name, kinds=JOB_KINDS)
        if busy:
            raise FailedPrecondition(f"model {name!r} has a {busy.kind} job ({busy.id}) queued or running; CancelJob it before deleting the model")
        self.cache.drop(name)
        trash = [_trash(self.model_dir(name), self.models_dir)]
        trash += [_trash(Path(a.path), self.artifacts_dir) for a in self.registry.artifacts(name)]
        self.registry.delete_model(name)
        for t in trash:
            if t is not None:
                shutil.rmtree(t, ignore_errors=True)

    def forget_unfinished(self, job: JobRecord, state: str) -> None:
        """When a job ends FAILED or CANCELLED: a model that has no version and no run left
        to resume (its first fit failed, or was cancelled before it started) is removed, so
        that no versionless model stays listed. An interrupted first fit stays, UNFINISHED."""
        name = job.model_name
        other = self.registry.active_job(name)
        if self.current_version(name) or self.registry.versions(name) or (other is not None and other.id != job.id):
            return
        run = self.store(name).run_dir / "run.json"
        if state == "CANCELLED" and run.exists() and read_json(run).get("status") == "running":
            return  # resumable
        log.info("model %r: its first fit ended %s with nothing to resume; removing it", name, state)
        self.cache.drop(name)
        trash = _trash(self.model_dir(name), self.models_dir)
        self.registry.delete_model(name)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def _trash(folder: Path, parent: Path) -> Path | None:
    """``folder`` renamed to a hidden name in ``parent`` (one rename: gone at once)."""
    if not folder.exists():
        return None
    trash = parent / f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}"
    folder.rename(trash)
    return trash
