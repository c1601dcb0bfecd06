"""``Predictor``: AutoGluon MultiModalPredictor's methods for the continuous-training
workflow (fit, continued fit, resume, predict, evaluate, embed, dump), over the pieces in
this package. It orchestrates; the work is in ``data``, ``features``, ``training``,
``model_store`` and ``dump``."""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .config import Config
from .data import drop_unlabelled, load_table
from .distributed import Scale, launched_rank, local_world_size, params_digest, split_scale
from .errors import FailedPrecondition, InvalidArgument, Unsupported
from .inference import raw_outputs, to_predictions
from .metrics import canonical, default_metric, higher_is_better, score
from .detection.data import DETECTION, check_detection_rows
from .detection.evaluation import METRICS as DETECTION_METRICS, check_metrics, coco_map
from .detection.model import DetectionModel
from .detection.training import train_detector
from .model_store import ModelStore, TrainedModel, frame_digest, load_model
from .models import build_net
from .plan import check_run_options, plan_fit
from .storage import read_json, write_json
from .training import train

log = logging.getLogger("emberd.engine")

__all__ = ["Predictor"]

MAX_HOLDOUT_ROWS = 1000


def _set_threads(cfg: Config) -> None:
    # the ranks of a distributed fit on one machine share its cores
    n = cfg.env.num_threads or max(1, (os.cpu_count() or 1) // local_world_size())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


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
        self._model: TrainedModel | DetectionModel | None = None
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
            p._model = store.load_version(version)
        elif meta.get("current_version") is not None:
            p._version = meta["current_version"]
            p._model = store.load_version(p._version)
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
            scale, rest = split_scale(hyperparameters)
            if rest:
                raise InvalidArgument(
                    f"a resume continues the interrupted run with its own hyperparameters; it takes only the scale-out keys "
                    f"(env.num_gpus, env.devices, env.num_nodes, env.strategy), not {sorted(rest)}"
                )
            return self._fit_resume(store, drop_unlabelled(train_df, self.label), tuning_df, started, emit, scale, job_id)
        parent = self._model
        plan = plan_fit(
            label=self.label,
            train_df=train_df,
            tuning_df=tuning_df,
            hyperparameters=hyperparameters,
            problem_type=self.problem_type,
            eval_metric=self.eval_metric,
            column_types=column_types,
            current=(parent.schema, parent.cfg) if parent else None,
            time_limit=time_limit,
            seed=seed,
        )
        schema, cfg, metric = plan.schema, plan.cfg, plan.metric
        rank = launched_rank(plan.scale)
        train_df = drop_unlabelled(train_df, self.label)
        _set_threads(cfg)
        if parent is None:
            if rank == 0 and store.exists() and store.meta().get("current_version") is not None:
                raise FailedPrecondition(
                    f"{self.path!r} already holds a trained predictor; load it to continue training, "
                    "or choose another path for a new model"
                )
            torch.manual_seed(seed)  # new layers start from the same weights for the same seed
            model = self._new_model(schema, cfg)
        elif isinstance(parent, DetectionModel):
            model = parent.continued(cfg)
        else:
            model = TrainedModel(schema, cfg, copy.deepcopy(parent.net), parent.tokenizer)

        train_df, val_df = self._split(train_df, tuning_df, cfg, seed)
        val_df = self._with_parent_val(store, self._version, val_df, tuning_df)
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
            model.write_assets(store.run_dir / "assets")
            write_json(store.run_dir / "run.json", run)
        return self._run(store, model, run, train_df, val_df, started, emit, resume_from=None, rank=rank)

    def _fit_resume(
        self, store: ModelStore, train_df: pd.DataFrame, tuning_df: pd.DataFrame | None, started: float, emit: Callable,
        scale: Scale | None, job_id: str | None = None,
    ) -> "Predictor":
        run = read_json(store.run_dir / "run.json")
        run = {**run, "run_id": run.get("run_id") or uuid.uuid4().hex, "job_id": job_id}
        if scale is not None:  # the same run on another number of processes
            run = {**run, "scale": scale.to_dict()}
        rank = launched_rank(Scale.from_dict(run.get("scale")))
        model = load_model(store.run_dir / "assets", None)
        ckpt = store.run_dir / "last.ckpt"
        if not ckpt.exists():
            # Killed before its first checkpoint: start the run again from its starting weights.
            log.warning("no checkpoint in the interrupted run at %s; restarting that run from its start", store.run_dir)
            base = store.load_version(run["parent_version"]).net.state_dict() if run["parent_version"] else None
            if base is not None:
                model.net.load_state_dict(base)
            else:
                model = self._new_model(model.schema, model.cfg)
        if isinstance(model, DetectionModel):
            check_detection_rows(train_df, model.schema, with_label=True, what="train_data")
        else:
            model.schema.check_columns(train_df, with_label=True, what="train_data")
        _set_threads(model.cfg)
        train_df, val_df = self._split(train_df, tuning_df, model.cfg, run["seed"])
        val_df = self._with_parent_val(store, run["parent_version"], val_df, tuning_df)
        self._resume = False
        return self._run(store, model, run, train_df, val_df, started, emit, resume_from=ckpt if ckpt.exists() else None, rank=rank)

    def _run(
        self,
        store: ModelStore,
        model: TrainedModel | DetectionModel,
        run: dict[str, Any],
        train_df: pd.DataFrame,
        val_df: pd.DataFrame,
        started: float,
        emit: Callable,
        resume_from: Path | None,
        rank: int = 0,
    ) -> "Predictor":
        schema, cfg = model.schema, model.cfg
        scale = Scale.from_dict(run.get("scale"))
        if rank != 0:
            emit = _drop_event  # rank 0 speaks for the group
        train_enc = model.encode(train_df, with_labels=True, skip_bad_images=True)
        val_enc = model.encode(val_df, with_labels=True, skip_bad_images=True)
        emit({"kind": "state", "state": "training", "train_rows": train_enc.n, "val_rows": val_enc.n, "resumed": resume_from is not None,
              "world_size": scale.world_size})
        if isinstance(model, DetectionModel):
            result = train_detector(
                model,
                train_set=train_enc,
                val_set=val_enc,
                continued=run["parent_version"] is not None,
                time_limit=run["time_limit"],
                started=started,
                checkpoint_path=store.run_dir / "last.ckpt",
                resume_from=resume_from,
                seed=run["seed"],
                emit=emit,
            )
        else:
            result = train(
                model.net,
                schema,
                cfg,
                train_enc=train_enc,
                val_enc=val_enc,
                make_collator=lambda enc, train: model.collator(enc, train=train, seed=run["seed"]),
                metric=run["metric"],
                time_limit=run["time_limit"],
                started=started,
                checkpoint_path=store.run_dir / "last.ckpt",
                resume_from=resume_from,
                fresh_head=run["parent_version"] is None,
                seed=run["seed"],
                emit=emit,
                scale=scale,
                rank=rank,
            )
        model.net.eval()
        ranks = {"rank": rank, "world_size": scale.world_size, "params_sha256": params_digest(model.net)}
        if rank != 0:  # the same weights as rank 0's (params_sha256 shows it); rank 0 writes them
            self._model, self.fit_summary = model, {"distributed": ranks}
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
            # Training did not beat the parent on the holdout: the new version keeps the
            # parent's weights (it still records the new rows' lineage and holdout), and says so.
            metrics["kept_parent"] = result.averaged_steps == [0]
            if metrics["kept_parent"]:
                emit({"kind": "state", "state": "kept_parent", "parent_version": parent, "val_score": result.best_score,
                      "message": f"{result.steps} steps on the new rows did not beat version {parent} on the holdout; "
                                 "the new version keeps its weights"})
            metrics["forgetting"] = self._forgetting(store, parent, model, run["metric"])
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
        self._model, self._version = model, version
        self.problem_type, self.eval_metric = schema.problem_type, run["metric"]
        self.fit_summary = {**metrics, "version": version, "fit_seconds": time.monotonic() - started}
        emit({"kind": "state", "state": "succeeded", "version": version, "val_score": result.best_score})
        return self

    @staticmethod
    def _new_model(schema: Any, cfg: Config) -> TrainedModel | DetectionModel:
        if schema.problem_type == DETECTION:
            return DetectionModel.create(schema, cfg)
        return TrainedModel(schema, cfg, build_net(schema, cfg, pretrained=True), Predictor._tokenizer(cfg) if schema.text else None)

    # ---- checks -----------------------------------------------------------------------
    def _split(self, train_df: pd.DataFrame, tuning_df: pd.DataFrame | None, cfg: Config, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        if tuning_df is not None:
            return train_df, drop_unlabelled(tuning_df, self.label)
        if len(train_df) < 2:
            raise InvalidArgument("train_data needs at least 2 labelled rows (one is held out for validation)")
        n_val = min(MAX_HOLDOUT_ROWS, max(1, int(round(len(train_df) * cfg.env.holdout_frac))))
        perm = np.random.default_rng(seed).permutation(len(train_df))
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return train_df.iloc[train_idx].reset_index(drop=True), train_df.iloc[val_idx].reset_index(drop=True)

    @staticmethod
    def _with_parent_val(store: ModelStore, parent: int | None, val_df: pd.DataFrame, tuning_df: pd.DataFrame | None) -> pd.DataFrame:
        """A continued fit without tuning_data validates on its own holdout and on the parent
        version's validation rows (at most MAX_HOLDOUT_ROWS, the new ones first): model
        selection weighs the data the model knew beside the new data."""
        if parent is None or tuning_df is not None:
            return val_df
        old = pd.read_parquet(store.version_dir(parent) / "val.parquet")
        old = old[[c for c in val_df.columns if c in old.columns]]
        return pd.concat([val_df, old], ignore_index=True).head(MAX_HOLDOUT_ROWS)

    def _forgetting(self, store: ModelStore, parent: int, model: TrainedModel, metric: str) -> dict[str, Any]:
        """Re-score the parent version's validation rows with the new weights."""
        pdir = store.version_dir(parent)
        before = read_json(pdir / "metrics.json")["val_score"]
        old_val = pd.read_parquet(pdir / "val.parquet")
        after = self._score(model, old_val, metric)
        change = after - before
        return {
            "parent_version": parent,
            "metric": metric,
            "previous_val_rows": len(old_val),
            "before": before,
            "after": after,
            "change": change,
            "forgot": (change < 0) if metric in DETECTION_METRICS or higher_is_better(metric) else (change > 0),
        }

    # ---- inference --------------------------------------------------------------------
    def _require_model(self) -> TrainedModel | DetectionModel:
        if self._model is None:
            raise FailedPrecondition("this predictor has no trained model yet: call fit first")
        return self._model

    def _raw(self, model: TrainedModel, df: pd.DataFrame, with_labels: bool = False) -> tuple[np.ndarray, Any]:
        model.schema.check_columns(df, with_label=with_labels)
        enc = model.encode(df, with_labels=with_labels, skip_bad_images=False)
        _set_threads(model.cfg)
        raw = raw_outputs(model.net, model.collator(enc, train=False), enc.lengths(model.cfg.text.text_pair_mode), model.cfg.env.eval_batch_size)
        return raw, enc

    def _score(self, model: TrainedModel | DetectionModel, df: pd.DataFrame, metric: str) -> float:
        if isinstance(model, DetectionModel):
            return self._detection_scores(model, df, [metric])[metric]
        df = drop_unlabelled(df, model.schema.label)
        raw, enc = self._raw(model, df, with_labels=True)
        y = enc.labels.numpy()
        if model.schema.problem_type == "regression":
            y = y.astype(np.float64) * model.schema.label_std + model.schema.label_mean
        return score(metric, y, to_predictions(model.schema, raw))

    def predict(self, data: pd.DataFrame | str, as_pandas: bool = True) -> pd.Series | np.ndarray | list:
        """Labels, values, or for a detector each row's detections: a list of
        ``{"bbox": [x1, y1, x2, y2], "score": s, "class": name}`` (original pixels)."""
        model = self._require_model()
        df = load_table(data)
        if isinstance(model, DetectionModel):
            out = self._detect(model, df)
            return pd.Series(out, index=df.index, name=model.schema.label) if as_pandas else out
        raw, _ = self._raw(model, df)
        out = to_predictions(model.schema, raw)
        if model.schema.problem_type != "regression":
            out = model.schema.decode_labels(out.argmax(1))
            try:
                out = out.astype(type(model.schema.classes[0])) if not isinstance(model.schema.classes[0], str) else out
            except (TypeError, ValueError):
                pass
        return pd.Series(out, index=df.index, name=model.schema.label) if as_pandas else out

    def predict_proba(self, data: pd.DataFrame | str, as_pandas: bool = True, as_multiclass: bool = True) -> pd.DataFrame | np.ndarray:
        model = self._require_model()
        if model.schema.problem_type in ("regression", DETECTION):
            raise FailedPrecondition(f"predict_proba is for classification; this model is {model.schema.problem_type}: use predict")
        df = load_table(data)
        raw, _ = self._raw(model, df)
        proba = to_predictions(model.schema, raw)
        if not as_multiclass and model.schema.problem_type == "binary":
            proba = proba[:, 1]
            return pd.Series(proba, index=df.index) if as_pandas else proba
        return pd.DataFrame(proba, index=df.index, columns=list(model.schema.classes)) if as_pandas else proba

    def evaluate(self, data: pd.DataFrame | str, metrics: list[str] | str | None = None) -> dict[str, float]:
        model = self._require_model()
        df = load_table(data)
        if model.schema.label not in df.columns:
            raise InvalidArgument(f"evaluate needs the label column {model.schema.label!r}; data has {list(df.columns)}")
        if isinstance(model, DetectionModel):
            names = [metrics] if isinstance(metrics, str) else list(metrics or [self.eval_metric or "map"])
            return self._detection_scores(model, df, check_metrics(names))
        names = [metrics] if isinstance(metrics, str) else list(metrics or [self.eval_metric or default_metric(model.schema.problem_type)])
        names = [canonical(m, model.schema.problem_type) for m in names]
        df = drop_unlabelled(df, model.schema.label)
        raw, enc = self._raw(model, df, with_labels=True)
        y = enc.labels.numpy()
        if model.schema.problem_type == "regression":
            y = y.astype(np.float64) * model.schema.label_std + model.schema.label_mean
        out = to_predictions(model.schema, raw)
        return {m: score(m, y, out) for m in names}

    @torch.inference_mode()
    def extract_embedding(self, data: pd.DataFrame | str, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """The features the head sees: each modality's embedding, concatenated (N, D)."""
        from .features import LengthBuckets

        model = self._require_model()
        if isinstance(model, DetectionModel):
            raise Unsupported("extract_embedding is for classification and regression models; a detector gives boxes: use predict")
        df = load_table(data)
        model.schema.check_columns(df, with_label=False)
        enc = model.encode(df, with_labels=False, skip_bad_images=False)
        collator = model.collator(enc, train=False)
        out: np.ndarray | None = None
        model.net.eval()
        for rows in LengthBuckets(enc.lengths(model.cfg.text.text_pair_mode), model.cfg.env.eval_batch_size, shuffle=False):
            f = torch.cat(model.net.features(collator(rows)), -1).numpy()
            if out is None:
                out = np.empty((enc.n, f.shape[1]), dtype=np.float32)
            out[rows] = f
        return torch.from_numpy(out) if as_tensor else out

    def _detect(self, model: DetectionModel, df: pd.DataFrame) -> list[list[dict[str, Any]]]:
        check_detection_rows(df, model.schema, with_label=False, what="data")
        ds = model.encode(df, with_labels=False, skip_bad_images=False)
        _set_threads(model.cfg)
        classes = model.schema.classes
        return [
            [{"bbox": [float(v) for v in b], "score": float(sc), "class": classes[int(c)]} for b, sc, c in zip(*found)]
            for found in model.detect(ds)
        ]

    def _detection_scores(self, model: DetectionModel, df: pd.DataFrame, names: list[str]) -> dict[str, float]:
        """COCO mAP and friends (``detection.evaluation.METRICS``) on labelled rows."""
        check_detection_rows(df, model.schema, with_label=True, what="data")
        ds = model.encode(df, with_labels=True, skip_bad_images=False)
        _set_threads(model.cfg)
        scores = coco_map(model.detect(ds), model.targets(ds), len(model.schema.classes))
        return {m: scores[m] for m in names}

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
    @staticmethod
    def _tokenizer(cfg: Config) -> Any:
        from transformers import AutoTokenizer

        from .models.text import resolve_text_checkpoint

        return AutoTokenizer.from_pretrained(resolve_text_checkpoint(cfg.text.checkpoint_name))

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
