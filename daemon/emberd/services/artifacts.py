"""Artifacts: Dump (each backbone as its own library loads it) and Export (an ONNX bundle,
made in a child process) publish a folder under ``artifacts/``; looking one up by id."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .. import warm
from ..datastore import DataStore
from ..engine.errors import NotFound
from ..engine.faults import fault
from ..engine.storage import fresh_staging_dir, publish_dir
from ..recovery import ARTIFACT_MARKER, write_artifact_marker
from ..registry import Registry
from ..settings import Settings
from .catalog import Catalog
from .domain import ArtifactRecord, TableRef
from .serving import Serving


def drop_staging(artifacts_dir: Path, art_id: str) -> None:
    """The staging folders of artifact ``art_id`` that a killed process left."""
    for leftover in artifacts_dir.glob(f".{art_id}.*.staging"):
        shutil.rmtree(leftover, ignore_errors=True)


class Artifacts:
    def __init__(self, settings: Settings, registry: Registry, catalog: Catalog, serving: Serving, data: DataStore, artifacts_dir: Path) -> None:
        self.settings, self.registry, self.catalog, self.serving, self.data = settings, registry, catalog, serving, data
        self.dir = artifacts_dir
        self._exports = threading.Semaphore(1)  # one export at a time: tracing takes a few GiB

    def get(self, id: str) -> ArtifactRecord:
        row = self.registry.artifact(id)
        if row is None:
            raise NotFound(f"no artifact {id!r}")
        return row

    def _record(self, art_id: str, kind: str, name: str, version: int, folder: Path) -> ArtifactRecord:
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ARTIFACT_MARKER)
        size = sum((folder / f).stat().st_size for f in files)
        self.registry.add_artifact(art_id, kind, name, version, str(folder), files, size)
        return self.get(art_id)

    def dump(self, name: str, version: int) -> ArtifactRecord:
        entry, v = self.serving.warm(name, version)
        from ..engine.dump import dump_backbones

        art_id = uuid.uuid4().hex
        staging = fresh_staging_dir(self.dir, art_id)
        try:
            with entry.lock:
                dump_backbones(entry.predictor._require_model(), staging)
            write_artifact_marker(staging, {"id": art_id, "kind": "dump", "model_name": name, "version": v, "created_at": time.time()})
            fault("dump.mid")
            final = self.dir / art_id
            publish_dir(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._record(art_id, "dump", name, v, final)

    def export(self, name: str, version: int, parity: TableRef | None = None, backbones: bool = False, opset: int = 0) -> ArtifactRecord:
        """ONNX bundle of a version, made in a child process (``python -m
        emberd.engine.export``'s main, forked warm: ``warm.run_export``): tracing a model
        must not share a process with the threads that serve predictions, and its memory
        goes away with the child."""
        from ..engine import errors
        from ..engine.export import check_opset

        if opset:
            check_opset(opset)
        v = self.catalog.require_version(name, version)
        rows = str(self.data.keep(self.data.resolve(**vars(parity), what="parity_data"), "parity_data").path) if parity else None
        art_id = uuid.uuid4().hex
        final = self.dir / art_id
        with self._exports, tempfile.TemporaryDirectory(prefix="ember-export-") as tmp:
            err = Path(tmp) / "error.json"
            argv = ["version", str(self.catalog.model_dir(name)), str(v), str(final), "--error-file", str(err)]
            argv += ["--rows", rows] if rows else []
            argv += ["--backbones"] if backbones else []
            argv += ["--opset", str(opset)] if opset else []
            code = warm.run_export(argv, threads=self.settings.torch_threads, method=self.settings.worker_start)
            if code != 0:
                drop_staging(self.dir, art_id)  # a killed export's half bundle
                if err.exists():
                    e = json.loads(err.read_text())
                    cls = getattr(errors, e["kind"], None)
                    if isinstance(cls, type) and issubclass(cls, errors.EmberError):
                        raise cls(e["message"])
                    raise RuntimeError(f"export of {name!r} v{v} failed: {e['message']}")
                raise RuntimeError(f"export of {name!r} v{v} failed (exit {code}); the daemon's log has its traceback")
        write_artifact_marker(final, {"id": art_id, "kind": "export", "model_name": name, "version": v, "created_at": time.time()})
        return self._record(art_id, "export", name, v, final)
