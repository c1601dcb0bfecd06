"""Serving: Predict, Evaluate and Embed from the warm cache of loaded versions. Each call's
rows are checked and cut into slices of the model's eval batch; concurrent callers' slices
of one warm version are coalesced by its batcher (``emberd.batching``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..batching import BatchLimits
from ..cache import Entry, ModelCache
from ..engine import Predictor
from ..engine.errors import Cancelled, InvalidArgument
from ..engine.model_store import ModelStore
from ..settings import Settings
from .catalog import Catalog


def warm_cache(settings: Settings, models_dir: Path) -> ModelCache:
    """The cache of loaded versions under ``models_dir``, within the memory budget; a
    version whose weights file changed on disk is loaded again."""

    def load(name: str, version: int) -> Predictor:
        return Predictor.load(models_dir / name, version=version)

    def stamp(name: str, version: int) -> Any:
        try:
            st = (ModelStore(models_dir / name).version_dir(version) / "model.safetensors").stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    return ModelCache(settings.cache_budget_bytes, load, stamp)


class Serving:
    def __init__(self, settings: Settings, catalog: Catalog, cache: ModelCache) -> None:
        self.settings, self.catalog, self.cache = settings, catalog, cache
        self.batch_limits = BatchLimits(settings.batch_max_rows, settings.batch_max_delay_ms / 1000)
        self.on_batch: Callable[[int, int], None] = lambda calls, rows: None  # told each Predict/Embed batch's size (metrics)

    def warm(self, name: str, version: int = 0, alias: str = "") -> tuple[Entry, int]:
        v = self.catalog.require_version(name, version, alias)
        return self.cache.get(name, v), v

    def stats(self) -> dict[str, Any]:
        return self.cache.stats()

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

    def evaluate(
        self, name: str, version: int, frame: pd.DataFrame, metrics: list[str], alive: Callable[[], bool] = lambda: True
    ) -> tuple[dict[str, float], int]:
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
