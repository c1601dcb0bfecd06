"""``TableTask``: classification and regression over a table's text, image, numeric and
categorical columns, one fused network (``model_store.TrainedModel``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import Config
from ..data import Schema, drop_unlabelled
from ..distributed import Scale, set_threads
from ..inference import evaluating, raw_outputs, to_predictions
from ..metrics import canonical, default_metric, higher_is_better, score
from ..model_store import TrainedModel
from ..models import build_net
from ..models.text import load_tokenizer
from ..training import RunResult, train
from .base import Task

__all__ = ["TableTask"]


class TableTask(Task):
    model: TrainedModel

    @classmethod
    def create(cls, schema: Schema, cfg: Config) -> "TableTask":
        return cls(TrainedModel(schema, cfg, build_net(schema, cfg, pretrained=True), load_tokenizer(cfg) if schema.text else None))

    def continued(self, schema: Schema, cfg: Config) -> "TableTask":
        return TableTask(TrainedModel(schema, cfg, copy.deepcopy(self.model.net), self.model.tokenizer))

    @property
    def default_metric(self) -> str:
        return default_metric(self.model.schema.problem_type)

    def check_rows(self, df: pd.DataFrame, *, with_label: bool, what: str = "data") -> None:
        self.model.schema.check_columns(df, with_label=with_label, what=what)

    def train(
        self, train_enc: Any, val_enc: Any, run: dict[str, Any], *, started: float, checkpoint_path: Path,
        resume_from: Path | None, emit: Callable[[dict[str, Any]], None], scale: Scale, rank: int,
    ) -> RunResult:
        m = self.model
        return train(
            m.net,
            m.schema,
            m.cfg,
            train_enc=train_enc,
            val_enc=val_enc,
            make_collator=lambda enc, train: m.collator(enc, train=train, seed=run["seed"]),
            metric=run["metric"],
            time_limit=run["time_limit"],
            started=started,
            checkpoint_path=checkpoint_path,
            resume_from=resume_from,
            fresh_head=run["parent_version"] is None,
            seed=run["seed"],
            emit=emit,
            scale=scale,
            rank=rank,
        )

    # ---- inference --------------------------------------------------------------------
    def _raw(self, df: pd.DataFrame, with_labels: bool = False) -> tuple[np.ndarray, Any]:
        m = self.model
        m.schema.check_columns(df, with_label=with_labels)
        enc = m.encode(df, with_labels=with_labels, skip_bad_images=False)
        set_threads(m.cfg)
        raw = raw_outputs(m.net, m.collator(enc, train=False), enc.lengths(m.cfg.text.text_pair_mode), m.cfg.env.eval_batch_size)
        return raw, enc

    def _labelled_outputs(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The labels (in the label's units) and the model's outputs on the labelled rows."""
        s = self.model.schema
        raw, enc = self._raw(drop_unlabelled(df, s.label), with_labels=True)
        y = enc.labels.numpy()
        if s.problem_type == "regression":
            y = y.astype(np.float64) * s.label_std + s.label_mean
        return y, to_predictions(s, raw)

    def score(self, df: pd.DataFrame, metric: str) -> float:
        return score(metric, *self._labelled_outputs(df))

    def evaluate(self, df: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
        names = [canonical(m, self.model.schema.problem_type) for m in metrics]
        y, out = self._labelled_outputs(df)
        return {m: score(m, y, out) for m in names}

    def higher_is_better(self, metric: str) -> bool:
        return higher_is_better(metric)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        s = self.model.schema
        raw, _ = self._raw(df)
        out = to_predictions(s, raw)
        if s.problem_type != "regression":
            out = s.decode_labels(out.argmax(1))
            try:
                out = out.astype(type(s.classes[0])) if not isinstance(s.classes[0], str) else out
            except (TypeError, ValueError):
                pass
        return out

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        raw, _ = self._raw(df)
        return to_predictions(self.model.schema, raw)

    @torch.inference_mode()
    def embed(self, df: pd.DataFrame) -> np.ndarray:
        from ..features import LengthBuckets

        m = self.model
        m.schema.check_columns(df, with_label=False)
        enc = m.encode(df, with_labels=False, skip_bad_images=False)
        collator = m.collator(enc, train=False)
        out: np.ndarray | None = None
        with evaluating(m.net):
            for rows in LengthBuckets(enc.lengths(m.cfg.text.text_pair_mode), m.cfg.env.eval_batch_size, shuffle=False):
                f = torch.cat(m.net.features(collator(rows)), -1).numpy()
                if out is None:
                    out = np.empty((enc.n, f.shape[1]), dtype=np.float32)
                out[rows] = f
        return out

    # ---- out to other formats ---------------------------------------------------------
    def export(self, out_dir: Path, rows: pd.DataFrame, *, backbones: bool, source: dict[str, Any] | None, opset: int) -> Path:
        from ..export import export_table

        return export_table(self.model, out_dir, rows, backbones=backbones, source=source, opset=opset)

    def dump(self, save_path: Path) -> list[Path]:
        from ..dump import dump_table_backbones

        return dump_table_backbones(self.model, save_path)
