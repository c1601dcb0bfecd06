"""``Predictor``: AutoGluon MultiModalPredictor's methods for the continuous-training
workflow (fit, continued fit, resume, predict, evaluate, embed, dump, export), over the
pieces in this package. It orchestrates a fit's run (plan, folder, run record, publish);
what a kind of model does is its task's (``tasks``: table/fusion or detection), which rows
a fit validates on and how a continued fit is judged is ``fit_policy``'s."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import fit_policy
from .data import drop_unlabelled, load_table
from .detection.data import DETECTION
from .distributed import Scale, launched_rank, params_digest, set_threads
from .errors import FailedPrecondition, InvalidArgument
from .model_store import ModelStore, frame_digest, load_model
from .plan import check_run_options, plan_fit
from .storage import read_json, write_json
from .tasks import Task, create_task, task_for

log = logging.getLogger("emberd.engine")

__all__ = ["Predictor"]


def _drop_event(event: dict[str, Any]) -> None:
    pass


class Predictor:
    """Train, keep training, resume, predict with and dump a multimodal model.

    ``path`` is the predictor's folder (created by the first fit); every fit writes a new
    version there and the newest successful one serves predictions."""

    def __init__(
        self,
        label: str | None = None,
        problem_type: str | None = None,
        eval_metric: str | None = None,
        path: str | os.PathLike | None = None,
        verbosity: int = 2,
    ) -> None:
        self.label = label
        self.problem_type = problem_type
        self.eval_metric = eval_metric
        self.path = str(path) if path is not None else os.path.join("EmberModels", time.strftime("ember-%Y%m%d_%H%M%S"))
        self.verbosity = verbosity
        self._task: Task | None = None
        self._version: int | None = None
        self._resume = False
        self.fit_summary: dict[str, Any] | None = None

    # ---- loading ----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, resume: bool = False, version: int | None = None) -> "Predictor":
        """The current version at ``path`` (or ``version``); with ``resume=True``, ready to
        continue the interrupted run there (call ``fit`` with the same data)."""
        store = ModelStore(path)
        published = store.settle_run() if resume else None  # killed after publishing: that version stands
        meta = store.meta()
        p = cls(label=meta["label"], problem_type=meta["problem_type"], eval_metric=meta["eval_metric"], path=path)
        if resume:
            run = store.run_dir / "run.json"
            if published is not None:
                raise FailedPrecondition(
                    f"nothing to resume at {str(path)!r}: the interrupted run already published version {published} "
                    "(it is current); load without resume=True to continue training on new data"
                )
            if not run.exists() or read_json(run)["status"] != "running":
                raise FailedPrecondition(
                    f"nothing to resume at {str(path)!r}: no interrupted run (the last fit finished or none started); "
                    "load without resume=True to continue training on new data"
                )
            p._resume = True
        if version is not None:
            p._version = version
            p._task = task_for(store.load_version(version))
        elif meta.get("current_version") is not None:
            p._version = meta["current_version"]
            p._task = task_for(store.load_version(p._version))
        elif not resume:
            raise FailedPrecondition(
                f"{str(path)!r} has no finished model: its first fit was interrupted. "
                "Load it with resume=True and call fit again to finish that run."
            )
        return p

    @property
    def version(self) -> int | None:
        return self._version

    @property
    def _model(self) -> Any:
        """The current model (``TrainedModel`` or ``DetectionModel``), or None before a fit."""
        return None if self._task is None else self._task.model

    @property
    def class_labels(self) -> list[Any] | None:
        return None if self._model is None or self._model.schema.problem_type == "regression" else list(self._model.schema.classes)

    @property
    def forgetting_report(self) -> dict[str, Any] | None:
        return None if self.fit_summary is None else self.fit_summary.get("forgetting")

    # ---- fit --------------------------------------------------------------------------
    def fit(
        self,
        train_data: pd.DataFrame | str,
        tuning_data: pd.DataFrame | str | None = None,
        time_limit: float | None = None,
        hyperparameters: dict[str, Any] | None = None,
        seed: int = 0,
        column_types: dict[str, str] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        job_id: str | None = None,
        started_at: float | None = None,
    ) -> "Predictor":
        """Train a new model, continue training the current one on new data (a new version
        from the current weights), or finish an interrupted run (after ``load(resume=True)``).

        ``hyperparameters`` may hold AutoMM's scale-out keys (``env.num_gpus``,
        ``env.devices``, ``env.num_nodes``, ``env.strategy``; the only keys a resume takes):
        with more than one process, every rank of a group started from outside (the daemon,
        torchrun, SLURM) calls ``fit`` alike, and rank 0 alone writes the folder.

        ``job_id`` names this fit for its caller (the daemon's job id; default a fresh id): a
        run publishes at most one version, and its lineage records the run and the job.

        ``started_at``: the ``time.monotonic()`` at which the time budget began, if before
        this call (the daemon's job start: its worker's own start-up is charged to the budget).

        Everything is validated before any work; a refused or failed fit leaves the
        predictor's folder as it was."""
        started = time.monotonic() if started_at is None else started_at
        emit = on_event or self._log_event
        check_run_options(time_limit=time_limit, seed=seed)
        train_df = load_table(train_data, what="train_data")
        tuning_df = load_table(tuning_data, what="tuning_data") if tuning_data is not None else None
        store = ModelStore(self.path)
        if self._resume:
            scale = fit_policy.check_resume_options(hyperparameters)
            return self._fit_resume(store, drop_unlabelled(train_df, self.label), tuning_df, started, emit, scale, job_id)
        parent = self._task
        plan = plan_fit(
            label=self.label,
            train_df=train_df,
            tuning_df=tuning_df,
            hyperparameters=hyperparameters,
            problem_type=self.problem_type,
            eval_metric=self.eval_metric,
            column_types=column_types,
            current=(parent.model.schema, parent.model.cfg) if parent else None,
            time_limit=time_limit,
            seed=seed,
        )
        schema, cfg, metric = plan.schema, plan.cfg, plan.metric
        rank = launched_rank(plan.scale)
        train_df = drop_unlabelled(train_df, self.label)
        set_threads(cfg)
        if parent is None:
            if rank == 0:
                fit_policy.check_new_path(store, self.path)
            torch.manual_seed(seed)  # new layers start from the same weights for the same seed
            task = create_task(schema, cfg)
        else:
            task = parent.continued(schema, cfg)

        train_df, val_df = fit_policy.split_holdout(train_df, tuning_df, self.label, cfg, seed)
        val_df = fit_policy.with_parent_val(store, self._version, val_df, tuning_df)
        run = {
            "status": "running",
            "run_id": job_id or uuid.uuid4().hex,  # the idempotency key of the version this run publishes
            "job_id": job_id,
            "parent_version": self._version,
            "time_limit": time_limit,
            "seed": seed,
            "metric": metric,
            "train_digest": frame_digest(train_df),
            "train_rows": len(train_df),
            "val_rows": len(val_df),
            "started_at": time.time(),
            "scale": plan.scale.to_dict(),
        }
        # Metadata before training: a crash at any point after this can be resumed.
        if rank == 0:
            if not store.exists():
                store.write_meta(
                    {"label": self.label, "problem_type": schema.problem_type, "eval_metric": metric, "current_version": None}
                )
            store.clear_run()
            task.model.write_assets(store.run_dir / "assets")
            write_json(store.run_dir / "run.json", run)
        return self._run(store, task, run, train_df, val_df, started, emit, resume_from=None, rank=rank)

    def _fit_resume(
        self, store: ModelStore, train_df: pd.DataFrame, tuning_df: pd.DataFrame | None, started: float, emit: Callable,
        scale: Scale | None, job_id: str | None = None,
    ) -> "Predictor":
        run = read_json(store.run_dir / "run.json")
        run = {**run, "run_id": run.get("run_id") or uuid.uuid4().hex, "job_id": job_id}
        if scale is not None:  # the same run on another number of processes
            run = {**run, "scale": scale.to_dict()}
        rank = launched_rank(Scale.from_dict(run.get("scale")))
        task = task_for(load_model(store.run_dir / "assets", None))
        ckpt = store.run_dir / "last.ckpt"
        if not ckpt.exists():
            # Killed before its first checkpoint: start the run again from its starting weights.
            log.warning("no checkpoint in the interrupted run at %s; restarting that run from its start", store.run_dir)
            base = store.load_version(run["parent_version"]).net.state_dict() if run["parent_version"] else None
            if base is not None:
                task.model.net.load_state_dict(base)
            else:
                task = create_task(task.model.schema, task.model.cfg)
        task.check_rows(train_df, with_label=True, what="train_data")
        cfg = task.model.cfg
        set_threads(cfg)
        train_df, val_df = fit_policy.split_holdout(train_df, tuning_df, self.label, cfg, run["seed"])
        val_df = fit_policy.with_parent_val(store, run["parent_version"], val_df, tuning_df)
        self._resume = False
        return self._run(store, task, run, train_df, val_df, started, emit, resume_from=ckpt if ckpt.exists() else None, rank=rank)

    def _run(
        self,
        store: ModelStore,
        task: Task,
        run: dict[str, Any],
        train_df: pd.DataFrame,
        val_df: pd.DataFrame,
        started: float,
        emit: Callable,
        resume_from: Path | None,
        rank: int = 0,
    ) -> "Predictor":
        model = task.model
        scale = Scale.from_dict(run.get("scale"))
        if rank != 0:
            emit = _drop_event  # rank 0 speaks for the group
        train_enc = task.encode(train_df, with_labels=True, skip_bad_images=True)
        val_enc = task.encode(val_df, with_labels=True, skip_bad_images=True)
        emit({"kind": "state", "state": "training", "train_rows": train_enc.n, "val_rows": val_enc.n, "resumed": resume_from is not None,
              "world_size": scale.world_size})
        result = task.train(
            train_enc, val_enc, run, started=started, checkpoint_path=store.run_dir / "last.ckpt", resume_from=resume_from,
            emit=emit, scale=scale, rank=rank,
        )
        model.net.eval()
        ranks = {"rank": rank, "world_size": scale.world_size, "params_sha256": params_digest(model.net)}
        if rank != 0:  # the same weights as rank 0's (params_sha256 shows it); rank 0 writes them
            self._task, self.fit_summary = task, {"distributed": ranks}
            return self
        metrics: dict[str, Any] = {
            "metric": run["metric"],
            "val_score": result.best_score,
            "averaged_steps": result.averaged_steps,
            "history": result.history,
            "steps": result.steps,
            "epochs": result.epochs,
            "train_rows": train_enc.n,
            "val_rows": val_enc.n,
            "samples_per_s": result.samples_per_s,
            "stopped_by": result.stopped_by,
            "train_seconds": result.elapsed_s,
            "distributed": ranks,
        }
        parent = run["parent_version"]
        if parent is not None:
            metrics.update(fit_policy.continued_outcome(store, parent, task, run["metric"], result, emit))
        val_frame = val_df.iloc[val_enc.kept_rows].reset_index(drop=True)
        version = store.publish_version(
            model,
            metrics=metrics,
            lineage={"parent_version": parent, "train_digest": run["train_digest"], "train_rows": run["train_rows"], "created_at": time.time(),
                     "run_id": run["run_id"], "job_id": run.get("job_id")},
            val_frame=val_frame,
        )
        write_json(store.run_dir / "run.json", {**run, "status": "succeeded", "version": version})
        (store.run_dir / "last.ckpt").unlink(missing_ok=True)
        self._task, self._version = task, version
        self.problem_type, self.eval_metric = model.schema.problem_type, run["metric"]
        self.fit_summary = {**metrics, "version": version, "fit_seconds": time.monotonic() - started}
        emit({"kind": "state", "state": "succeeded", "version": version, "val_score": result.best_score})
        return self

    # ---- inference --------------------------------------------------------------------
    def _require_task(self) -> Task:
        if self._task is None:
            raise FailedPrecondition("this predictor has no trained model yet: call fit first")
        return self._task

    def _require_model(self) -> Any:
        """The current model (``TrainedModel`` or ``DetectionModel``); refused before a fit."""
        return self._require_task().model

    def predict(self, data: pd.DataFrame | str, as_pandas: bool = True) -> pd.Series | np.ndarray | list:
        """Labels, values, or for a detector each row's detections: a list of
        ``{"bbox": [x1, y1, x2, y2], "score": s, "class": name}`` (original pixels)."""
        task = self._require_task()
        df = load_table(data)
        out = task.predict(df)
        return pd.Series(out, index=df.index, name=task.model.schema.label) if as_pandas else out

    def predict_proba(self, data: pd.DataFrame | str, as_pandas: bool = True, as_multiclass: bool = True) -> pd.DataFrame | np.ndarray:
        task = self._require_task()
        schema = task.model.schema
        if schema.problem_type in ("regression", DETECTION):
            raise FailedPrecondition(f"predict_proba is for classification; this model is {schema.problem_type}: use predict")
        df = load_table(data)
        proba = task.predict_proba(df)
        if not as_multiclass and schema.problem_type == "binary":
            proba = proba[:, 1]
            return pd.Series(proba, index=df.index) if as_pandas else proba
        return pd.DataFrame(proba, index=df.index, columns=list(schema.classes)) if as_pandas else proba

    def evaluate(self, data: pd.DataFrame | str, metrics: list[str] | str | None = None) -> dict[str, float]:
        task = self._require_task()
        df = load_table(data)
        label = task.model.schema.label
        if label not in df.columns:
            raise InvalidArgument(f"evaluate needs the label column {label!r}; data has {list(df.columns)}")
        names = [metrics] if isinstance(metrics, str) else list(metrics or [self.eval_metric or task.default_metric])
        return task.evaluate(df, names)

    @torch.inference_mode()
    def extract_embedding(self, data: pd.DataFrame | str, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """The features the head sees: each modality's embedding, concatenated (N, D)."""
        out = self._require_task().embed(load_table(data))
        return torch.from_numpy(out) if as_tensor else out

    # ---- dump -------------------------------------------------------------------------
    def dump_model(self, save_path: str | os.PathLike | None = None) -> str:
        """Each backbone in its own library's format: ``hf_text/`` (transformers),
        ``timm_image/`` (timm), ``mmdet_image/`` (a whole mmdet detector). Returns the folder."""
        from .dump import dump_backbones

        model = self._require_model()
        save_path = str(save_path) if save_path is not None else os.path.join(self.path, "dump")
        dump_backbones(model, Path(save_path))
        return save_path

    # ---- export -----------------------------------------------------------------------
    def export_onnx(
        self,
        data: pd.DataFrame | str | None = None,
        path: str | os.PathLike | None = None,
        *,
        opset_version: int | None = None,
        backbones: bool = False,
        **unused: Any,
    ) -> str:
        """An ONNX bundle of the current version in ``path`` (default ``<path>/onnx``),
        checked with onnx.checker and an onnxruntime parity run on ``data`` (real rows;
        default: the version's held-out validation rows). Returns its ``model.onnx``, as
        AutoGluon does; ``ember.onnx.OnnxPredictor`` runs the bundle without torch."""
        from .export import OPSET, PARITY_ROWS, export_model

        model = self._require_model()
        store = ModelStore(self.path)
        rows = load_table(data) if data is not None else pd.read_parquet(store.version_dir(self.version) / "val.parquet")
        out = Path(path) if path is not None else Path(self.path) / "onnx"
        source = {"model_path": str(self.path), "version": self.version}
        export_model(model, out, rows.head(PARITY_ROWS), backbones=backbones, source=source, opset=opset_version or OPSET)
        return str(out / "model.onnx")

    # ---- helpers ----------------------------------------------------------------------
    def _log_event(self, e: dict[str, Any]) -> None:
        if self.verbosity < 2:
            return
        if e["kind"] == "progress":
            eta = "" if e["eta_s"] is None else f" eta {e['eta_s']:.0f}s"
            log.info("epoch %d step %d loss %.4f %.1f samples/s%s", e["epoch"], e["step"], e["loss"], e["samples_per_s"], eta)
        elif e["kind"] == "validation":
            log.info("validation at step %d: %.4f (best %.4f)", e["step"], e["score"], e["best"])
        else:
            log.info("%s", e)
