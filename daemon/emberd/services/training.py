"""Training jobs: Fit, Resume and Transfer validated on the calling thread (names, options,
paths, images, the plan) and queued (a refusal writes nothing); and what the daemon does
as a training job succeeds or ends (record its model and version, free its checkpoint,
apply retention, forget a model whose first fit left nothing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..datastore import DataStore
from ..engine.distributed import Scale, split_scale
from ..engine.errors import FailedPrecondition, InvalidArgument, NotFound
from ..engine.plan import check_run_options, plan_fit
from ..engine.sources import ImageTooLarge, ReadPolicy, confine, is_image_path, open_image
from ..engine.storage import read_json
from ..jobs import JobManager
from ..jobspec import JobSpec, TrainSpec
from ..registry import TRAINING_KINDS, Registry
from .catalog import Catalog
from .domain import CHECKPOINT_KEYS, FitOptions, JobRecord, ScaleOptions, TableRef, check_name, names_a_path


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


class Training:
    def __init__(self, registry: Registry, catalog: Catalog, data: DataStore, jobs: JobManager, read_policy: ReadPolicy) -> None:
        self.registry, self.catalog, self.data, self.jobs, self.read_policy = registry, catalog, data, jobs, read_policy

    # ---- requests ---------------------------------------------------------------------------
    def fit(
        self, name: str, train: TableRef, tuning: TableRef, opts: FitOptions, *, kind: str = "FIT", daemon_checkpoints: dict[str, str] | None = None
    ) -> JobRecord:
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
        current = self.catalog.current_schema(name) if existing else None
        if kind == "TRANSFER" and existing:
            raise FailedPrecondition(f"model {name!r} exists; Transfer starts a new model: choose a new name")
        if existing and current is None and self.catalog.store(name).exists():
            raise FailedPrecondition(
                f"model {name!r} has no finished version: its first fit was interrupted or failed; "
                "Resume it, or DeleteModel and fit again"
            )
        label = opts.label or (existing.label if existing else "")
        if not label:
            raise InvalidArgument("options.label is required for a new model: name the column to predict", field="options.label")
        plan = plan_fit(
            label=label,
            train_df=train_t.frame,
            tuning_df=tuning_t.frame if tuning_t else None,
            hyperparameters=hyperparameters,
            problem_type=opts.problem_type or None,
            eval_metric=opts.eval_metric or (existing.eval_metric if existing else None),
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
        spec = JobSpec(kind, TrainSpec(
            model_dir=str(self.catalog.model_dir(name)),
            label=label,
            problem_type=opts.problem_type or plan.schema.problem_type,
            eval_metric=plan.metric,
            train_path=str(train_t.path),
            train_dataset=train_t.dataset_id,
            tuning_path=str(tuning_t.path) if tuning_t else None,
            time_limit=opts.time_limit_s or None,
            hyperparameters=hyperparameters,
            seed=opts.seed,
            column_types=opts.column_types,
            continued=plan.continued,
            scale=_local_only(plan.scale).to_dict(),
        ))
        return self.submit(name, spec, label, plan.schema.problem_type, plan.metric)

    def transfer(self, name: str, train: TableRef, tuning: TableRef, opts: FitOptions, dump_artifact_id: str) -> JobRecord:
        art = self.registry.artifact(dump_artifact_id)
        if art is None or art.kind != "dump":
            raise NotFound(f"no dump artifact {dump_artifact_id!r}; Dump a model first")
        root = Path(art.path)
        dumped = {f"model.{b}.checkpoint_name": str(root / b) for b in ("hf_text", "timm_image", "mmdet_image") if (root / b).is_dir()}
        return self.fit(name, train, tuning, opts, kind="TRANSFER", daemon_checkpoints=dumped)

    def resume(self, name: str, train: TableRef, tuning: TableRef, scale: ScaleOptions = ScaleOptions()) -> JobRecord:
        row = self.catalog.require_model(name)
        self._refuse_if_busy(name)
        last = next(iter(self.registry.jobs(name, limit=1, kinds=TRAINING_KINDS)), None)
        if last is None or last.state not in ("INTERRUPTED", "CANCELLED"):
            state = last.state if last else "none"
            raise FailedPrecondition(
                f"model {name!r} has no interrupted fit to resume (its last job is {state}); use Fit to train on new data"
            )
        published = self.catalog.published_version(last)
        if published is not None:  # Resume never publishes a run's version twice
            self.jobs.mark_published(last.id, published)
            raise FailedPrecondition(f"job {last.id} already published version {published} of {name!r}; nothing to resume")
        run = self.catalog.store(name).run_dir / "run.json"
        if not run.exists() or read_json(run)["status"] != "running":
            raise FailedPrecondition(f"model {name!r}'s last run left nothing to resume; Fit it again")
        spec = JobSpec("RESUME", last.spec.training)
        changes = scale.hyperparameters()
        if changes:  # the same run on another number of processes
            base = Scale.from_dict(spec.training.scale).to_hyperparameters()
            if "env.devices" in changes and base["env.num_gpus"]:
                changes["env.num_gpus"] = changes["env.devices"]  # on GPU, one rank per GPU
            spec = spec.with_train(scale=_local_only(split_scale({**base, **changes})[0]).to_dict())
        if not train and spec.training.train_path is None:
            raise FailedPrecondition(f"job {last.id} was rebuilt from disk without its data; give train_data to Resume it")
        if train:
            spec = spec.with_train(train_path=str(self.data.keep(self.data.resolve(**vars(train), what="train_data"), "train_data").path))
        if tuning:
            spec = spec.with_train(tuning_path=str(self.data.keep(self.data.resolve(**vars(tuning), what="tuning_data"), "tuning_data").path))
        return self.submit(name, spec, row.label, row.problem_type, row.eval_metric, resumes=last.id)

    def submit(self, name: str, spec: JobSpec, label: str, problem_type: str, metric: str, resumes: str | None = None) -> JobRecord:
        """Queue a job of ``name`` (any kind), recording the model first seen here."""
        job = self.registry.create_job(JobManager.new_id(), name, spec, resumes_job_id=resumes)
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

    def _confine_checkpoints(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint keys that name folders, resolved and confined to the data roots
        (PERMISSION_DENIED outside them; names such as the MiniLM or ``resnet18`` pass)."""
        out = dict(hyperparameters)
        for key in CHECKPOINT_KEYS:
            v = out.get(key)
            if isinstance(v, str) and names_a_path(key, v):
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

    # ---- job hooks (training kinds) -----------------------------------------------------------
    def job_succeeded(self, job: JobRecord, result: dict[str, Any]) -> None:
        self.catalog.record_model(job.model_name)
        self.catalog.sync_versions(job.model_name, job_id=job.id)

    def job_published(self, job: JobRecord) -> int | None:
        return self.catalog.published_version(job)

    def job_ended(self, job: JobRecord, state: str) -> None:
        """Just before ``job``'s final ``state`` is recorded."""
        self.catalog.after_run(job.model_name, state)
        if state in ("FAILED", "CANCELLED"):
            self.catalog.forget_unfinished(job, state)
