"""The life of a model's versions after they are published: aliases (``production`` ->
version 3; Predict/Evaluate/Export by alias; rollback = moving the alias), DeleteVersion,
retention (``keep_versions``), checkpoint cleanup after a run ends, and finding the version
a job published (exactly-once publishing: the version records its job's id).

Aliases are written to ``models/<name>/aliases.json`` (atomic) and the registry, so a
rebuilt registry gets them back. ``latest`` is implicit: the current version."""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any

from .engine.errors import FailedPrecondition, InvalidArgument, NotFound
from .engine.storage import read_json, write_json
from .registry import JOB_KINDS

if TYPE_CHECKING:
    from .registry import JobRow, Registry
    from .settings import Settings

log = logging.getLogger("emberd.lifecycle")

LATEST = "latest"
_ALIASES = threading.Lock()  # a model's aliases.json is written in the order its changes commit
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")


class Lifecycle:
    """Mixed into ``app.Ember`` (which provides these attributes)."""

    # provided by Ember: registry, settings, cache, jobs, _store, require_model,
    # current_version, sync_versions
    registry: "Registry"
    settings: "Settings"
    cache: Any
    jobs: Any

    # ---- publishing ----------------------------------------------------------------------
    def _published_version(self, job: "JobRow") -> int | None:
        """The version ``job`` published, if it did (settling a run killed after its
        rename: current version, run.json, registry row)."""
        store = self._store(job.model_name)
        if not store.exists():
            return None
        store.settle_run()
        if self.registry.model(job.model_name) is None:
            meta = store.meta()
            self.registry.upsert_model(job.model_name, meta["label"], meta["problem_type"], meta["eval_metric"])
        self.sync_versions(job.model_name)
        return next((r["version"] for r in self.registry.versions(job.model_name) if r["job_id"] == job.id), None)

    def _after_job(self, job: "JobRow", state: str) -> None:
        """A run that ended for good frees its checkpoint; a new version may retire old ones
        (called just before the job's final ``state`` is recorded)."""
        store = self._store(job.model_name)
        if state in ("SUCCEEDED", "FAILED"):  # only INTERRUPTED and CANCELLED runs resume
            (store.run_dir / "last.ckpt").unlink(missing_ok=True)
        if state == "SUCCEEDED" and self.settings.keep_versions > 0:
            self.apply_retention(job.model_name)

    # ---- aliases -------------------------------------------------------------------------
    def _write_aliases(self, name: str) -> None:
        write_json(self._store(name).path / "aliases.json", self.registry.aliases(name))

    def restore_aliases(self, name: str) -> None:
        """Aliases from ``aliases.json`` the registry lacks (after a rebuild)."""
        path = self._store(name).path / "aliases.json"
        if path.exists() and not self.registry.aliases(name):
            versions = set(self._store(name).versions())
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
        if version not in self._store(name).versions():
            raise NotFound(f"model {name!r} has no version {version}; versions: {self._store(name).versions()}")
        with _ALIASES:
            self.registry.set_alias(name, alias, version)
            self._write_aliases(name)

    def delete_alias(self, name: str, alias: str) -> None:
        self.require_model(name)
        with _ALIASES:
            if not self.registry.delete_alias(name, alias):
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            self._write_aliases(name)

    # ---- versions ------------------------------------------------------------------------
    def _pinned(self, name: str) -> dict[int, list[str]]:
        pins: dict[int, list[str]] = {}
        for alias, v in self.registry.aliases(name).items():
            pins.setdefault(v, []).append(alias)
        pins.setdefault(self.current_version(name), []).append(LATEST)
        run = self._store(name).run_dir / "run.json"
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
            raise FailedPrecondition(f"model {name!r} has a {busy.kind} job ({busy.id}) queued or running; wait for it or CancelJob it before deleting a version")
        store = self._store(name)
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
        versions = self._store(name).versions()
        pinned = self._pinned(name)
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in pinned]
        for v in doomed:
            self.cache.drop(name, v)
            self.registry.delete_version(name, v)
            self._store(name).delete_version(v)
        if doomed:
            log.info("retention (keep %d): deleted %s versions %s", keep, name, doomed)
        return doomed
