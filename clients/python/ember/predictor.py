"""``MultiModalPredictor``: AutoGluon's MultiModalPredictor API for the continuous-training
workflow, run by an Ember daemon. AutoGluon code runs unchanged but for its import line.

A predictor's ``path`` names the model on the daemon (the folder's name plus a digest of
its absolute path) and holds a small ``ember.json`` pointer, so ``load(path)`` finds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .client import Client, read_table
from .v1 import job_pb2

POINTER = "ember.json"
ARTIFACT_MARK = "ember_artifact.json"


def _model_name(path: str) -> str:
    p = os.path.abspath(path)
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", os.path.basename(p.rstrip("/")) or "model").strip(".-") or "model"
    return f"{stem[:80]}-{hashlib.sha256(p.encode()).hexdigest()[:10]}"


class MultiModalPredictor:
    def __init__(
        self,
        label: str | None = None,
        problem_type: str | None = None,
        eval_metric: str | None = None,
        path: str | os.PathLike | None = None,
        verbosity: int = 2,
        client: Client | None = None,
        **unused: Any,
    ) -> None:
        self.label = label
        self.problem_type = problem_type
        self.eval_metric = eval_metric
        self.path = str(path) if path is not None else os.path.join("AutogluonModels", time.strftime("ag-%Y%m%d_%H%M%S"))
        self.verbosity = verbosity
        self._client = client
        self._name = _model_name(self.path)
        self._resume = False
        self.last_job: job_pb2.Job | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    @property
    def model_name(self) -> str:
        return self._name

    def _write_pointer(self, address: str) -> None:
        Path(self.path).mkdir(parents=True, exist_ok=True)
        tmp = Path(self.path) / f".{POINTER}.tmp"
        tmp.write_text(json.dumps({"model_name": self._name, "address": address, "label": self.label}))
        os.replace(tmp, Path(self.path) / POINTER)

    # ---- AutoGluon's methods -----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, resume: bool = False, client: Client | None = None, **unused: Any) -> "MultiModalPredictor":
        pointer = Path(path) / POINTER
        if not pointer.exists():
            raise FileNotFoundError(f"{path} holds no Ember predictor ({POINTER} missing); fit one with this path first")
        meta = json.loads(pointer.read_text())
        p = cls(label=meta.get("label"), path=path, client=client)
        p._name = meta["model_name"]
        model = p.client.get_model(p._name)
        p.label, p.problem_type, p.eval_metric = model.label, model.problem_type, model.eval_metric
        p._resume = resume
        return p

    def fit(
        self,
        train_data: pd.DataFrame | str,
        tuning_data: pd.DataFrame | str | None = None,
        time_limit: float | None = None,
        hyperparameters: dict[str, Any] | None = None,
        seed: int = 0,
        column_types: dict[str, str] | None = None,
        devices: int | None = None,
        num_nodes: int | None = None,
        strategy: str | None = None,
        **unused: Any,
    ) -> "MultiModalPredictor":
        """As AutoMM's. ``devices``/``num_nodes``/``strategy`` (or the hyperparameters
        ``env.num_gpus``/``env.devices``, ``env.num_nodes``, ``env.strategy``) train on
        several processes with Lightning DDP; the daemon starts them. On a resume they
        change the interrupted run's number of processes."""
        c = self.client
        self._write_pointer(c.address)
        scale = dict(devices=devices or 0, num_nodes=num_nodes or 0, strategy=strategy or "")
        if self._resume:
            job = c.resume(self._name, train_data, **scale)
            self._resume = False
        else:
            hp = dict(hyperparameters or {})
            dump = self._transfer_source(hp)
            opts = dict(label=self.label or "", problem_type=self.problem_type, eval_metric=self.eval_metric,
                        time_limit=time_limit, hyperparameters=hp, seed=seed, column_types=column_types, **scale)
            if dump is not None:
                job = c.transfer(self._name, dump, train_data, tuning_data, **opts)
            else:
                job = c.fit(self._name, train_data, tuning_data, **opts)
        self.last_job = c.wait(job, progress=self.verbosity > 0)
        if self.last_job.state != job_pb2.JOB_STATE_SUCCEEDED:
            state = job_pb2.JobState.Name(self.last_job.state)
            hint = ""
            if self.last_job.state == job_pb2.JOB_STATE_INTERRUPTED:
                hint = f"; continue it with MultiModalPredictor.load({str(self.path)!r}, resume=True).fit(...)"
            raise RuntimeError(f"fit of {self._name} ended {state}: {self.last_job.error}{hint}")
        model = c.get_model(self._name)
        self.problem_type, self.eval_metric = model.problem_type, model.eval_metric
        return self

    @staticmethod
    def _transfer_source(hp: dict[str, Any]) -> str | None:
        """A checkpoint_name that points into a folder written by ``dump_model`` becomes a
        Transfer from that dump (the daemon holds the files); other values pass through."""
        for key in ("model.hf_text.checkpoint_name", "model.timm_image.checkpoint_name", "model.mmdet_image.checkpoint_name"):
            v = hp.get(key)
            if isinstance(v, str) and (Path(v).parent / ARTIFACT_MARK).exists():
                hp.pop(key)
                return json.loads((Path(v).parent / ARTIFACT_MARK).read_text())["artifact_id"]
        return None

    def predict(self, data: pd.DataFrame | str, as_pandas: bool = True, **unused: Any) -> pd.Series | np.ndarray | list:
        """Labels or values; for a detector, per row a list of ``{"bbox": [x1, y1, x2, y2],
        "score": s, "class": name}`` (pixels of the original image)."""
        df = _frame(data)
        r = self.client.predict(self._name, df)
        out: np.ndarray
        if self.problem_type == "object_detection":
            found = [[{"bbox": [b.x1, b.y1, b.x2, b.y2], "score": b.score, "class": b.label} for b in d.boxes] for d in r.detections]
            return pd.Series(found, index=df.index, name=self.label) if as_pandas else found
        if r.values:
            out = np.asarray(r.values)
        else:
            out = np.asarray(list(r.labels), dtype=object)
            try:
                out = out.astype(np.int64) if all(re.fullmatch(r"-?\d+", s) for s in r.labels) else out
            except ValueError:
                pass
        return pd.Series(out, index=df.index, name=self.label) if as_pandas else out

    def predict_proba(self, data: pd.DataFrame | str, as_pandas: bool = True, as_multiclass: bool = True, **unused: Any) -> Any:
        df = _frame(data)
        r = self.client.predict(self._name, df, probabilities=True)
        proba = np.asarray(r.probabilities, dtype=np.float32).reshape(len(df), len(r.classes))
        if not as_multiclass and len(r.classes) == 2:
            return pd.Series(proba[:, 1], index=df.index) if as_pandas else proba[:, 1]
        classes = [int(c) if re.fullmatch(r"-?\d+", c) else c for c in r.classes]
        return pd.DataFrame(proba, index=df.index, columns=classes) if as_pandas else proba

    def evaluate(self, data: pd.DataFrame | str, metrics: list[str] | str | None = None, **unused: Any) -> dict[str, float]:
        metrics = [metrics] if isinstance(metrics, str) else metrics
        return self.client.evaluate(self._name, _frame(data), metrics)

    def extract_embedding(self, data: pd.DataFrame | str, **unused: Any) -> np.ndarray:
        return self.client.embed(self._name, _frame(data))

    def dump_model(self, save_path: str | os.PathLike | None = None) -> str:
        """Dump the backbones on the daemon and download them into ``save_path``."""
        save_path = str(save_path or os.path.join(self.path, "dump"))
        art = self.client.dump(self._name)
        self.client.download(art.id, save_path)
        Path(save_path, ARTIFACT_MARK).write_text(json.dumps({"artifact_id": art.id, "model_name": self._name, "version": art.version}))
        return save_path

    def export_onnx(
        self,
        data: pd.DataFrame | str | None = None,
        path: str | os.PathLike | None = None,
        *,
        opset_version: int | None = None,
        backbones: bool = False,
        **unused: Any,
    ) -> str:
        """Export to ONNX on the daemon and download the bundle into ``path`` (default
        ``<path>/onnx``); returns the ``model.onnx`` inside it, as AutoGluon does. ``data``:
        real rows for the parity check (default: the version's held-out validation rows).
        Run the bundle without torch or a daemon with ``ember.onnx.OnnxPredictor``."""
        frame = None if data is None else _frame(data)
        art = self.client.export(self._name, parity_data=frame, backbones=backbones, opset_version=opset_version or 0)
        path = str(path or os.path.join(self.path, "onnx"))
        self.client.download(art.id, path)
        return os.path.join(path, "model.onnx")

    @property
    def class_labels(self) -> list[Any] | None:
        m = self.client.get_model(self._name)
        return list(m.classes) or None


def _frame(data: pd.DataFrame | str) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else read_table(data)
