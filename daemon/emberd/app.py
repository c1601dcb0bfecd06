"""Ember's daemon-side operations in domain terms (no protobuf here): validating and
queueing fits, resumes and transfers; serving predictions from the warm cache; dumps and
artifacts; the model registry's view of each model. The gRPC servicers are thin wrappers."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .batching import BatchLimits
from .cache import Entry, ModelCache
from .datastore import DataStore
from .engine import Predictor
from .engine.config import MINILM, Config
from .engine.distributed import Scale, split_scale
from .engine.data import Schema
from .engine.errors import Cancelled, DataLoss, FailedPrecondition, InvalidArgument, NotFound
from .engine.faults import fault
from .engine.model_store import ModelStore
from .engine.plan import check_run_options, plan_fit
from .engine.sources import ImageTooLarge, ReadPolicy, confine, is_image_path, open_image
from .engine.storage import fresh_staging_dir, publish_dir, read_json
from . import batch, warm
from .jobs import JobManager
from .lifecycle import Lifecycle
from .recovery import ARTIFACT_MARKER, add_version_row, record_artifact, recover, write_artifact_marker
from .registry import JOB_KINDS, TRAINING_KINDS, JobRow
from .settings import Settings

log = logging.getLogger("emberd")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # matched in full (fullmatch): no trailing newline

# Hyperparameters that may name a folder on the daemon's host, and the names (not paths)
# each takes: the shipped MiniLM for text; for images and detectors any bare name (a timm
# architecture, a detector preset: the engine never reads a folder for a name without a
# separator).
CHECKPOINT_KEYS = ("model.hf_text.checkpoint_name", "model.timm_image.checkpoint_name", "model.mmdet_image.checkpoint_name")


def _names_a_path(key: str, value: str) -> bool:
    if key == "model.hf_text.checkpoint_name":
        return value != MINILM
    return "/" in value or os.sep in value or value.startswith((".", "~"))


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise InvalidArgument(
            f"{what} {name!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, no '..'",
            field=what.replace(" ", "_"),
        )
    return name


@dataclass(frozen=True)
class ScaleOptions:
    """The request's scale-out fields; zero or empty: not given (hyperparameters, then defaults)."""

    devices: int = 0
    num_nodes: int = 0
    strategy: str = ""

    def hyperparameters(self) -> dict[str, Any]:
        given = {"env.devices": self.devices, "env.num_nodes": self.num_nodes, "env.strategy": self.strategy}
        return {k: v for k, v in given.items() if v}


@dataclass(frozen=True)
class FitOptions:
    label: str = ""
    problem_type: str = ""
    eval_metric: str = ""
    time_limit_s: float = 0.0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    column_types: dict[str, str] = field(default_factory=dict)
    scale: ScaleOptions = ScaleOptions()


def _with_scale(hyperparameters: dict[str, Any], scale: ScaleOptions) -> dict[str, Any]:
    """The request's fields merged into AutoMM's env.* keys; the two must not disagree."""
    fields = scale.hyperparameters()
    clash = {k: (hyperparameters[k], v) for k, v in fields.items() if k in hyperparameters and hyperparameters[k] != v}
    if clash:
        raise InvalidArgument(f"the request's scale-out fields and its hyperparameters disagree: {clash}; give each once")
    return {**hyperparameters, **fields}


def _local_only(scale: Scale) -> Scale:
    """``scale`` if this daemon can start its ranks: one machine, no more processes than
    its cores (CPU ranks) or its GPUs."""
    if scale.accelerator == "cpu" and scale.devices > (os.cpu_count() or 1):
        cores = os.cpu_count() or 1
        raise InvalidArgument(
            f"env.devices (ScaleOptions.devices) = {scale.devices}: this machine has {cores} CPU core(s), "
            f"so the daemon starts at most {cores} processes; ask for 1 to {cores}"
        )
    if scale.num_nodes > 1:
        raise FailedPrecondition(
            f"num_nodes={scale.num_nodes}: the daemon starts the ranks of one machine only. Run a multi-node fit with "
            "torchrun or SLURM on every machine (`python -m emberd.worker SPEC.json`, see the README), against this "
            "daemon's root on a shared filesystem"
        )
    return scale


@dataclass(frozen=True)
class TableRef:
    dataset_id: str = ""
    path: str = ""
    json_records: str = ""
    parquet: bytes = b""

    def __bool__(self) -> bool:
        return bool(self.dataset_id or self.path or self.json_records or self.parquet)


class Ember(Lifecycle):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root = settings.root_path
        root.mkdir(parents=True, exist_ok=True)
        # the registry opened (or rebuilt) and the files under root made to agree with it
        self.registry, self.recovery = recover(root)
        # Every path a caller names is read under this (its RPCs by the interceptor, its workers by their spec)
        self.read_policy = ReadPolicy.confined(settings.data_roots, settings.max_image_pixels)
        self.data = DataStore(root, self.registry, self.read_policy, max_json_depth=settings.max_json_depth)
        self.models_dir = root / "models"
        self.artifacts_dir = root / "artifacts"
        self.models_dir.mkdir(exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        self.jobs = JobManager(
            self.registry,
            max_concurrent=settings.max_concurrent_jobs,
            on_success=self._record_success,
            published=self._job_published,
            on_end=self._job_ended,
            torch_threads=settings.torch_threads,
            read_policy=self.read_policy,
            start_method=settings.worker_start,
        )
        self.cache = ModelCache(settings.cache_budget_bytes, self._load_version, self._weights_stamp)
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="ember-registry-checkpoint", daemon=True)
        self._stopping = threading.Event()
        self._exports = threading.Semaphore(1)  # one export at a time: tracing takes a few GiB
        self.batch_limits = BatchLimits(settings.batch_max_rows, settings.batch_max_delay_ms / 1000)
        self.on_batch: Callable[[int, int], None] = lambda calls, rows: None  # told each Predict/Embed batch's size (metrics)

    def start(self) -> None:
        self.recovery.log()
        self._adopt_models()
        for row in self.registry.models():
            self.sync_versions(row["name"])
            self.restore_aliases(row["name"])
        self.jobs.start()
        self._checkpointer.start()

    def stop(self) -> None:
        self.jobs.stop()
        self._stopping.set()
        self.registry.close()  # checkpoints the WAL into the main file first

    def _checkpoint_loop(self) -> None:
        while not self._stopping.wait(self.settings.registry_checkpoint_s):
            try:
                self.registry.checkpoint()
            except Exception:  # noqa: BLE001 - the next one may succeed; a clean stop checkpoints too
                log.exception("registry checkpoint")

    # ---- models on disk ---------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.models_dir / check_name(name)

    def _store(self, name: str) -> ModelStore:
        return ModelStore(self.model_dir(name))

    def require_model(self, name: str) -> Any:
        row = self.registry.model(check_name(name))
        if row is None:
            raise NotFound(f"no model named {name!r}; ListModels shows the models this daemon holds")
        return row

    def current_version(self, name: str) -> int:
        store = self._store(name)
        return (store.meta().get("current_version") or 0) if store.exists() else 0

    def sync_versions(self, name: str, job_id: str | None = None) -> None:
        """Index the versions on disk the registry lacks (the one a job just wrote, with its
        ``job_id``; after a restart, any a worker published before the daemon recorded it)."""
        store = self._store(name)
        known = {r["version"] for r in self.registry.versions(name)}
        for v in store.versions():
            if v in known:
                continue
            d = store.version_dir(v)
            lineage = read_json(d / "lineage.json")
            add_version_row(self.registry, name, v, {"job_id": job_id, **lineage} if job_id and not lineage.get("job_id") else lineage,
                            read_json(d / "metrics.json"))

    def _adopt_models(self) -> None:
        """Index the finished predictor folders under ``models/`` that the registry lacks:
        those a multi-node fit (torchrun or SLURM running ``python -m emberd.worker``) wrote
        into this root on a shared filesystem while no daemon job covered them."""
        for d in sorted(self.models_dir.iterdir()):
            if NAME.fullmatch(d.name) and (d / "predictor.json").exists() and self.registry.model(d.name) is None:
                meta = ModelStore(d).meta()
                if meta.get("current_version"):
                    self.registry.upsert_model(d.name, meta["label"], meta["problem_type"], meta["eval_metric"])

    def _record_success(self, job: JobRow, result: dict[str, Any]) -> None:
        if job.kind == "BATCH_PREDICT":
            record_artifact(self.registry, self.artifacts_dir / job.spec["artifact_id"])
            return
        meta = self._store(job.model_name).meta()
        self.registry.upsert_model(job.model_name, meta["label"], meta["problem_type"], meta["eval_metric"])
        self.sync_versions(job.model_name, job_id=job.id)

    def _current_schema(self, name: str) -> tuple[Schema, Config] | None:
        v = self.current_version(name)
        if not v:
            return None
        d = self._store(name).version_dir(v)
        return Schema.from_json(read_json(d / "schema.json")), Config.from_dict(read_json(d / "config.json"))

    # ---- training ---------------------------------------------------------------------------
    def fit(
        self, name: str, train: TableRef, tuning: TableRef, opts: FitOptions, *, kind: str = "FIT", daemon_checkpoints: dict[str, str] | None = None
    ) -> JobRow:
        """Validate everything a fit needs on the calling thread (names, options, paths,
        images, the plan), then queue the job; a refusal writes nothing. ``daemon_checkpoints``:
        checkpoint folders the daemon itself chose (a Transfer's dump), for keys the caller left unset."""
        check_name(name)
        self._refuse_if_busy(name)
        check_run_options(time_limit=opts.time_limit_s or None, seed=opts.seed)
        hyperparameters = self._confine_checkpoints(_with_scale(opts.hyperparameters, opts.scale))
        hyperparameters.update({k: v for k, v in (daemon_checkpoints or {}).items() if k not in hyperparameters})
        train_t = self.data.resolve(**vars(train), what="train_data")
        tuning_t = self.data.resolve(**vars(tuning), what="tuning_data") if tuning else None
        existing = self.registry.model(name)
        current = self._current_schema(name) if existing else None
        if kind == "TRANSFER" and existing:
            raise FailedPrecondition(f"model {name!r} exists; Transfer starts a new model: choose a new name")
        if existing and current is None and self._store(name).exists():
            raise FailedPrecondition(
                f"model {name!r} has no finished version: its first fit was interrupted or failed; "
                "Resume it, or DeleteModel and fit again"
            )
        label = opts.label or (existing["label"] if existing else "")
        if not label:
            raise InvalidArgument("options.label is required for a new model: name the column to predict", field="options.label")
        plan = plan_fit(
            label=label,
            train_df=train_t.frame,
            tuning_df=tuning_t.frame if tuning_t else None,
            hyperparameters=hyperparameters,
            problem_type=opts.problem_type or None,
            eval_metric=opts.eval_metric or (existing["eval_metric"] if existing else None),
            column_types=opts.column_types or None,
            current=current,
            time_limit=opts.time_limit_s or None,
            seed=opts.seed,
        )
        self.admit_images(train_t.frame, plan.schema.image, "train_data")
        if tuning_t:
            self.admit_images(tuning_t.frame, plan.schema.image, "tuning_data")
            tuning_t = self.data.keep(tuning_t, "tuning_data")
        train_t = self.data.keep(train_t, "train_data")
        spec = {
            "model_dir": str(self.model_dir(name)),
            "label": label,
            "problem_type": opts.problem_type or plan.schema.problem_type,
            "eval_metric": plan.metric,
            "train_path": str(train_t.path),
            "train_dataset": train_t.dataset_id,
            "tuning_path": str(tuning_t.path) if tuning_t else None,
            "time_limit": opts.time_limit_s or None,
            "hyperparameters": hyperparameters,
            "seed": opts.seed,
            "column_types": opts.column_types,
            "continued": plan.continued,
            "scale": _local_only(plan.scale).to_dict(),
        }
        return self._submit(name, kind, spec, label, plan.schema.problem_type, plan.metric)

    def _confine_checkpoints(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint keys that name folders, resolved and confined to the data roots
        (PERMISSION_DENIED outside them; names such as the MiniLM or ``resnet18`` pass)."""
        out = dict(hyperparameters)
        for key in CHECKPOINT_KEYS:
            v = out.get(key)
            if isinstance(v, str) and _names_a_path(key, v):
                out[key] = str(confine(v, key, kind="dir", policy=self.read_policy))
        return out

    def admit_images(self, frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
        """Refuse, before any work, an image cell the daemon must not read: a path outside
        the data roots (PERMISSION_DENIED), or not a regular file, or an inline image over
        the pixel limit (INVALID_ARGUMENT). Paths are only stat'ed here, and the engine reads
        them under the same policy; a missing or undecodable image inside the roots is
        skipped with a warning by the fit, as always."""
        for col in columns:
            if col not in frame.columns:
                continue
            for i, v in enumerate(frame[col].tolist()):
                cell = f"{what}: column {col!r} row {i}"
                if is_image_path(v):
                    try:
                        confine(v, cell, kind="file", policy=self.read_policy)
                    except NotFound:
                        pass
                elif isinstance(v, (str, bytes, bytearray)):
                    try:
                        open_image(v, cell, policy=self.read_policy).close()
                    except ImageTooLarge:
                        raise
                    except Exception:  # noqa: BLE001 - not an image: the fit skips it, naming it
                        pass

    def _submit(self, name: str, kind: str, spec: dict[str, Any], label: str, problem_type: str, metric: str, resumes: str | None = None) -> JobRow:
        job = self.registry.create_job(JobManager.new_id(), name, kind, spec, resumes_job_id=resumes)
        if job is None:  # another request won the race since the check in fit/resume
            self._refuse_if_busy(name)
        if self.registry.model(name) is None:
            self.registry.upsert_model(name, label, problem_type, metric)
        self.jobs.submit(job)
        return job

    def _refuse_if_busy(self, name: str) -> None:
        busy = self.registry.active_job(name)
        if busy is not None:
            raise FailedPrecondition(
                f"model {name!r} is training (job {busy.id}); wait for it with WatchJob or CancelJob it first"
            )

    def transfer(self, name: str, train: TableRef, tuning: TableRef, opts: FitOptions, dump_artifact_id: str) -> JobRow:
        art = self.registry.artifact(dump_artifact_id)
        if art is None or art["kind"] != "dump":
            raise NotFound(f"no dump artifact {dump_artifact_id!r}; Dump a model first")
        root = Path(art["path"])
        dumped = {f"model.{b}.checkpoint_name": str(root / b) for b in ("hf_text", "timm_image", "mmdet_image") if (root / b).is_dir()}
        return self.fit(name, train, tuning, opts, kind="TRANSFER", daemon_checkpoints=dumped)

    def resume(self, name: str, train: TableRef, tuning: TableRef, scale: ScaleOptions = ScaleOptions()) -> JobRow:
        row = self.require_model(name)
        self._refuse_if_busy(name)
        last = next(iter(self.registry.jobs(name, limit=1, kinds=TRAINING_KINDS)), None)
        if last is None or last.state not in ("INTERRUPTED", "CANCELLED"):
            state = last.state if last else "none"
            raise FailedPrecondition(
                f"model {name!r} has no interrupted fit to resume (its last job is {state}); use Fit to train on new data"
            )
        published = self._published_version(last)
        if published is not None:  # Resume never publishes a run's version twice
            self.jobs.mark_published(last.id, published)
            raise FailedPrecondition(f"job {last.id} already published version {published} of {name!r}; nothing to resume")
        run = self._store(name).run_dir / "run.json"
        if not run.exists() or read_json(run)["status"] != "running":
            raise FailedPrecondition(f"model {name!r}'s last run left nothing to resume; Fit it again")
        spec = dict(last.spec)
        changes = scale.hyperparameters()
        if changes:  # the same run on another number of processes
            base = Scale.from_dict(spec.get("scale")).to_hyperparameters()
            if "env.devices" in changes and base["env.num_gpus"]:
                changes["env.num_gpus"] = changes["env.devices"]  # on GPU, one rank per GPU
            spec["scale"] = _local_only(split_scale({**base, **changes})[0]).to_dict()
        if not train and "train_path" not in spec:
            raise FailedPrecondition(f"job {last.id} was rebuilt from disk without its data; give train_data to Resume it")
        if train:
            spec["train_path"] = str(self.data.keep(self.data.resolve(**vars(train), what="train_data"), "train_data").path)
        if tuning:
            spec["tuning_path"] = str(self.data.keep(self.data.resolve(**vars(tuning), what="tuning_data"), "tuning_data").path)
        return self._submit(name, "RESUME", spec, row["label"], row["problem_type"], row["eval_metric"], resumes=last.id)

    # ---- serving ----------------------------------------------------------------------------
    def _load_version(self, name: str, version: int) -> Predictor:
        return Predictor.load(self.model_dir(name), version=version)

    def _weights_stamp(self, name: str, version: int) -> Any:
        try:
            st = (self._store(name).version_dir(version) / "model.safetensors").stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def require_version(self, name: str, version: int = 0, alias: str = "") -> int:
        """``version``, or the one ``alias`` names (neither: the current one) of ``name``;
        its files must be on disk (DATA_LOSS naming the first one missing)."""
        self.require_model(name)
        if alias and version:
            raise InvalidArgument("give a version or an alias, not both")
        v = self.resolve_alias(name, alias) if alias else (version or self.current_version(name))
        if not v:
            raise FailedPrecondition(f"model {name!r} has no trained version yet; wait for its fit to finish")
        if v not in self._store(name).versions():
            raise NotFound(f"model {name!r} has no version {v}; versions: {self._store(name).versions()}")
        try:
            self._store(name).check_version_files(v)
        except DataLoss:
            self.cache.drop(name, v)  # never serve weights that are gone
            raise
        return v

    def warm(self, name: str, version: int = 0, alias: str = "") -> tuple[Entry, int]:
        v = self.require_version(name, version, alias)
        return self.cache.get(name, v), v

    def _admit_rows(self, frame: pd.DataFrame, what: str) -> None:
        cap = self.settings.max_predict_rows
        if len(frame) == 0:
            raise InvalidArgument(f"{what} is empty: give at least one row")
        if len(frame) > cap:
            raise InvalidArgument(
                f"{what} has {len(frame)} rows; one call takes at most {cap} (--max-predict-rows). Predict a "
                f"table of any size with BatchPredict (a job), send the rows in batches of up to {cap}, or Export the model and "
                "score large tables with ember.onnx"
            )

    def _in_slices(self, entry: Entry, frame: pd.DataFrame, call: str, alive: Callable[[], bool], kind: str, run: Callable[[pd.DataFrame], Any]) -> list[Any]:
        """``run`` on slices of the model's eval batch, each through the model's batcher: it
        coalesces concurrent callers' slices of the same ``kind`` into one batch computed
        under the model's lock (so a long call interleaves with others), and a call whose
        client has gone (cancelled, deadline passed) stops at the next slice, its queued
        slice dropped uncomputed. The columns are checked first: a bad call never joins a batch."""
        model = entry.predictor._require_model()
        model.schema.check_columns(frame, with_label=False)  # whole-request errors name whole-request rows
        frame = frame[model.schema.feature_columns]  # the columns the model reads: others never meet another call's
        step = max(1, model.cfg.env.eval_batch_size)
        parts: list[Any] = []
        for start in range(0, len(frame), step):
            stopped = Cancelled(f"{call} stopped after {start} of {len(frame)} rows: the caller went away")
            if not alive():
                raise stopped
            try:
                parts.append(entry.batcher.run(kind, frame.iloc[start : start + step], run, alive, self.batch_limits, self.on_batch))
            except Cancelled:
                raise stopped from None
        return parts

    def predict(self, name: str, version: int, frame: pd.DataFrame, with_proba: bool, alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        self._admit_rows(frame, "data")
        entry, v = self.warm(name, version)
        p = entry.predictor
        call = f"Predict on {name!r}"
        if p.problem_type in ("regression", "object_detection"):
            parts = self._in_slices(entry, frame, call, alive, "predict", lambda part: p.predict(part, as_pandas=False))
            if p.problem_type == "regression":
                return {"values": np.concatenate(parts).tolist(), "version": v}
            return {"detections": [d for part in parts for d in part], "version": v}
        proba = np.concatenate(self._in_slices(entry, frame, call, alive, "proba", lambda part: p.predict_proba(part, as_pandas=False)))
        classes = p.class_labels or []
        labels = [str(classes[i]) for i in np.asarray(proba).argmax(1)]
        return {"labels": labels, "classes": [str(c) for c in classes], "proba": proba if with_proba else None, "version": v}

    def evaluate(self, name: str, version: int, frame: pd.DataFrame, metrics: list[str], alive: Callable[[], bool] = lambda: True) -> tuple[dict[str, float], int]:
        self._admit_rows(frame, "data")
        entry, v = self.warm(name, version)
        with entry.lock:
            if not alive():  # the caller gave up while waiting for the model
                raise Cancelled(f"Evaluate on {name!r} not started: the caller went away")
            return entry.predictor.evaluate(frame, metrics=metrics or None), v

    def embed(self, name: str, version: int, frame: pd.DataFrame, alive: Callable[[], bool] = lambda: True) -> np.ndarray:
        self._admit_rows(frame, "data")
        entry, _ = self.warm(name, version)
        return np.concatenate(self._in_slices(entry, frame, f"Embed on {name!r}", alive, "embed", entry.predictor.extract_embedding))

    # ---- artifacts ----------------------------------------------------------------------------
    def dump(self, name: str, version: int) -> Any:
        entry, v = self.warm(name, version)
        from .engine.dump import dump_backbones

        art_id = uuid.uuid4().hex
        staging = fresh_staging_dir(self.artifacts_dir, art_id)
        try:
            with entry.lock:
                dump_backbones(entry.predictor._require_model(), staging)
            files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
            write_artifact_marker(staging, {"id": art_id, "kind": "dump", "model_name": name, "version": v, "created_at": time.time()})
            fault("dump.mid")
            final = self.artifacts_dir / art_id
            publish_dir(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        size = sum((final / f).stat().st_size for f in files)
        self.registry.add_artifact(art_id, "dump", name, v, str(final), files, size)
        return self.registry.artifact(art_id)

    def export(self, name: str, version: int, parity: TableRef | None = None, backbones: bool = False, opset: int = 0) -> Any:
        """ONNX bundle of a version, made in a child process (``python -m
        emberd.engine.export``'s main, forked warm: ``warm.run_export``): tracing a model
        must not share a process with the threads that serve predictions, and its memory
        goes away with the child."""
        from .engine import errors
        from .engine.export import check_opset

        if opset:
            check_opset(opset)
        v = self.require_version(name, version)
        rows = str(self.data.keep(self.data.resolve(**vars(parity), what="parity_data"), "parity_data").path) if parity else None
        art_id = uuid.uuid4().hex
        final = self.artifacts_dir / art_id
        with self._exports, tempfile.TemporaryDirectory(prefix="ember-export-") as tmp:
            err = Path(tmp) / "error.json"
            argv = ["version", str(self.model_dir(name)), str(v), str(final), "--error-file", str(err)]
            argv += ["--rows", rows] if rows else []
            argv += ["--backbones"] if backbones else []
            argv += ["--opset", str(opset)] if opset else []
            code = warm.run_export(argv, threads=self.settings.torch_threads, method=self.settings.worker_start)
            if code != 0:
                self._drop_staging(art_id)  # a killed export's half bundle
                if err.exists():
                    e = json.loads(err.read_text())
                    cls = getattr(errors, e["kind"], None)
                    if isinstance(cls, type) and issubclass(cls, errors.EmberError):
                        raise cls(e["message"])
                    raise RuntimeError(f"export of {name!r} v{v} failed: {e['message']}")
                raise RuntimeError(f"export of {name!r} v{v} failed (exit {code}); the daemon's log has its traceback")
        files = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
        size = sum((final / f).stat().st_size for f in files)
        write_artifact_marker(final, {"id": art_id, "kind": "export", "model_name": name, "version": v, "created_at": time.time()})
        self.registry.add_artifact(art_id, "export", name, v, str(final), files, size)
        return self.registry.artifact(art_id)

    def _drop_staging(self, art_id: str) -> None:
        """The staging folders of artifact ``art_id`` that a killed process left."""
        for leftover in self.artifacts_dir.glob(f".{art_id}.*.staging"):
            shutil.rmtree(leftover, ignore_errors=True)

    # ---- batch prediction -----------------------------------------------------------------------
    def batch_predict(self, name: str, version: int, data: TableRef, with_proba: bool) -> JobRow:
        """Validate a batch prediction on the calling thread (model, version, table, the
        columns the model reads, on the table's first rows), then queue its job: a worker
        (``emberd.batch``) predicts every row and publishes ``artifacts/<id>``. A refusal
        writes nothing."""
        v = self.require_version(name, version)
        path = self._batch_input(data)
        try:
            first = next(batch.read_chunks(path, 64, "data"), None)
        except InvalidArgument:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure is the caller's input
            raise InvalidArgument(f"data: {path.name!r} is not a readable {batch.table_format(path)} table: {e}", field="data") from None
        if first is None or first.empty:
            raise InvalidArgument("data is empty: give at least one row", field="data")
        schema = Schema.from_json(read_json(self._store(name).version_dir(v) / "schema.json"))
        schema.check_columns(first, with_label=False)
        row = self.require_model(name)
        spec = {
            "model_dir": str(self.model_dir(name)), "model_name": name, "version": v, "data_path": str(path),
            "with_proba": with_proba, "artifacts_dir": str(self.artifacts_dir), "artifact_id": uuid.uuid4().hex,
        }
        return self._submit(name, "BATCH_PREDICT", spec, row["label"], row["problem_type"], row["eval_metric"])

    def _batch_input(self, data: TableRef) -> Path:
        """The file a batch prediction streams: an uploaded dataset's, or a path confined to
        the data roots (inline rows are for Predict)."""
        if data.dataset_id:
            row = self.registry.dataset(data.dataset_id)
            if row is None:
                raise NotFound(f"data: no dataset {data.dataset_id!r}; upload it first (DatasetService.UploadDataset)")
            return self.data.file(data.dataset_id, row["format"])
        if data.path:
            path = confine(data.path, "data", kind="file", policy=self.read_policy)
            batch.table_format(path)
            return path
        if data:
            raise InvalidArgument("data: BatchPredict streams an uploaded dataset (dataset_id) or a file under the data roots "
                                  "(path); send inline rows to Predict", field="data")
        raise InvalidArgument("data is missing: give a dataset_id or a path", field="data")

    def _job_published(self, job: JobRow) -> int | None:
        """The version a training job published; for a batch prediction, the version it
        predicted with once its artifact is in place (indexed here if the worker was killed
        between publishing and reporting)."""
        if job.kind in TRAINING_KINDS:
            return self._published_version(job)
        art_id = job.spec["artifact_id"]
        if self.registry.artifact(art_id) is None and (self.artifacts_dir / art_id / ARTIFACT_MARKER).exists():
            record_artifact(self.registry, self.artifacts_dir / art_id)
        art = self.registry.artifact(art_id)
        return art["version"] if art is not None else None

    def artifact(self, id: str) -> Any:
        row = self.registry.artifact(id)
        if row is None:
            raise NotFound(f"no artifact {id!r}")
        return row

    # ---- registry views -----------------------------------------------------------------------
    def model_info(self, name: str) -> dict[str, Any]:
        row = self.require_model(name)
        schema = self._current_schema(name)
        current = self.current_version(name)
        training = self.registry.active_job(name) is not None
        return {
            **dict(row),
            "current_version": current,
            "versions": [dict(v) for v in self.registry.versions(name)],
            "training": training,
            "aliases": self.registry.aliases(name),
            "classes": [str(c) for c in schema[0].classes] if schema else [],
            "state": "READY" if current else "TRAINING" if training else "UNFINISHED",
        }

    def _job_ended(self, job: JobRow, state: str) -> None:
        """Just before ``job``'s final ``state`` is recorded."""
        if job.kind not in TRAINING_KINDS:  # a batch prediction: what a killed worker staged goes
            self._drop_staging(job.spec["artifact_id"])
            return
        self._after_job(job, state)
        if state in ("FAILED", "CANCELLED"):
            self._forget_unfinished(job, state)

    def _forget_unfinished(self, job: JobRow, state: str) -> None:
        """When a job ends FAILED or CANCELLED: a model that has no version and no run left
        to resume (its first fit failed, or was cancelled before it started) is removed, so
        that no versionless model stays listed. An interrupted first fit stays, UNFINISHED."""
        name = job.model_name
        other = self.registry.active_job(name)
        if self.current_version(name) or self.registry.versions(name) or (other is not None and other.id != job.id):
            return
        run = self._store(name).run_dir / "run.json"
        if state == "CANCELLED" and run.exists() and read_json(run).get("status") == "running":
            return  # resumable
        log.info("model %r: its first fit ended %s with nothing to resume; removing it", name, state)
        self.cache.drop(name)
        trash = self._trash(self.model_dir(name), self.models_dir)
        self.registry.delete_model(name)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def delete_model(self, name: str) -> None:
        """The model, its versions and its artifacts: each folder renamed away first (a
        restart sweeps what a kill left), then the records, then the files."""
        self.require_model(name)
        busy = self.registry.active_job(name, kinds=JOB_KINDS)
        if busy:
            raise FailedPrecondition(f"model {name!r} has a {busy.kind} job ({busy.id}) queued or running; CancelJob it before deleting the model")
        self.cache.drop(name)
        trash = [self._trash(self.model_dir(name), self.models_dir)]
        trash += [self._trash(Path(a["path"]), self.artifacts_dir) for a in self.registry.artifacts(name)]
        self.registry.delete_model(name)
        for t in trash:
            if t is not None:
                shutil.rmtree(t, ignore_errors=True)

    @staticmethod
    def _trash(folder: Path, parent: Path) -> Path | None:
        """``folder`` renamed to a hidden name in ``parent`` (one rename: gone at once)."""
        if not folder.exists():
            return None
        trash = parent / f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}"
        folder.rename(trash)
        return trash
