"""A predictor's folder on disk, and a trained model loaded from it.

```
<path>/predictor.json            label, problem type, metric, current version (atomic JSON)
<path>/versions/<n>/             immutable once published (staged, then renamed into place)
    model.safetensors            all weights of the network
    schema.json config.json      how rows are read; the hyperparameters (dotted keys)
    hf_text/  timm_image/        backbone configs + tokenizer files (architecture, no weights)
    mmdet_image/config.json      a detector's mmdet config (object_detection models)
    metrics.json lineage.json    validation score and history; parent version, data digest
    val.parquet                  the validation rows, re-scored after the next continued fit
<path>/run/run.json, last.ckpt   the current or last training run (for resume)
```
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .config import Config
from .data import Schema
from .detection.data import DETECTION
from .detection.model import DetectionModel
from .errors import FailedPrecondition, NotFound
from .features import Collator, Encoded, SpecialTokens, encode_table, pad_multiple_for
from .models import MultimodalNet, build_net
from .storage import fresh_staging_dir, publish_dir, read_json, read_tensors, remove_stale_staging, write_json, write_tensors

FORMAT = 1


def _plain(v: Any) -> Any:
    """A list cell (a Python list, or the arrays Parquet gives back) as nested lists."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def frame_digest(df: pd.DataFrame) -> str:
    """A content digest of a frame (lineage: which data a version came from); list cells
    (detection boxes and labels) count by their values, whether lists or arrays."""
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    lists = [c for c in df.columns if df[c].dtype == object and df[c].map(lambda v: isinstance(v, (list, np.ndarray))).any()]
    if lists:
        df = df.assign(**{c: df[c].map(lambda v: repr(_plain(v))) for c in lists})
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrainedModel:
    """A network with everything needed to read rows for it."""

    schema: Schema
    cfg: Config
    net: MultimodalNet
    tokenizer: Any | None

    def special_tokens(self) -> SpecialTokens | None:
        t = self.tokenizer
        return None if t is None else SpecialTokens(t.cls_token_id, t.sep_token_id, t.pad_token_id)

    def encode(self, df: pd.DataFrame, *, with_labels: bool, skip_bad_images: bool) -> Encoded:
        return encode_table(
            df,
            self.schema,
            self.tokenizer,
            max_text_len=self.cfg.text.max_text_len,
            pair_mode=self.cfg.text.text_pair_mode,
            image_size=self.cfg.image.image_size,
            with_labels=with_labels,
            skip_bad_images=skip_bad_images,
        )

    def collator(self, enc: Encoded, *, train: bool, seed: int = 0) -> Collator:
        image = self.net.encoders["image"] if "image" in self.net.encoders else None
        return Collator(
            enc,
            self.special_tokens(),
            max_text_len=self.cfg.text.max_text_len,
            pair_mode=self.cfg.text.text_pair_mode,
            pad_multiple=pad_multiple_for(self.cfg.env.pad_to_multiple_of),
            mean=image.mean if image else (0.0, 0.0, 0.0),
            std=image.std if image else (1.0, 1.0, 1.0),
            hflip=train and "hflip" in self.cfg.image.train_transforms,
            seed=seed,
            kernels=self.cfg.env.kernels,
        )

    # ---- writing ----------------------------------------------------------------------
    def write_assets(self, folder: Path) -> None:
        """Schema, config and backbone configs: all that rebuilds the architecture."""
        write_json(folder / "schema.json", self.schema.to_json())
        write_json(folder / "config.json", self.cfg.to_dict())
        if "text" in self.net.encoders:
            (folder / "hf_text").mkdir(parents=True, exist_ok=True)
            self.net.encoders["text"].backbone.config.save_pretrained(folder / "hf_text")
            self.tokenizer.save_pretrained(folder / "hf_text")
        if "image" in self.net.encoders:
            from timm.models._hub import save_config_for_hf

            (folder / "timm_image").mkdir(parents=True, exist_ok=True)
            save_config_for_hf(self.net.encoders["image"].backbone, str(folder / "timm_image" / "config.json"))

    # ---- reading ----------------------------------------------------------------------
    @classmethod
    def from_assets(cls, folder: Path, weights: dict[str, torch.Tensor] | None) -> "TrainedModel":
        schema = Schema.from_json(read_json(folder / "schema.json"))
        cfg = Config.from_dict(read_json(folder / "config.json"))
        net = build_net(
            schema,
            cfg,
            pretrained=False,
            text_config_dir=str(folder / "hf_text"),
            image_config_dir=str(folder / "timm_image"),
        )
        if weights is not None:
            net.load_state_dict(weights, strict=True)
        tokenizer = None
        if schema.text:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder / "hf_text")
        net.eval()
        return cls(schema, cfg, net, tokenizer)


def load_model(folder: Path, weights: dict[str, torch.Tensor] | None) -> "TrainedModel | DetectionModel":
    """The model whose assets are in ``folder`` (a detector or a multimodal network)."""
    if read_json(folder / "schema.json")["problem_type"] == DETECTION:
        return DetectionModel.from_assets(folder, weights)
    return TrainedModel.from_assets(folder, weights)


class ModelStore:
    """The folder of one predictor: its metadata, versions and training run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def meta_path(self) -> Path:
        return self.path / "predictor.json"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def meta(self) -> dict[str, Any]:
        if not self.exists():
            raise NotFound(f"no Ember predictor at {str(self.path)!r} (predictor.json missing)")
        meta = read_json(self.meta_path)
        if meta.get("format") != FORMAT:
            raise FailedPrecondition(f"{self.meta_path} has format {meta.get('format')}, this Ember reads {FORMAT}")
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_json(self.meta_path, {**meta, "format": FORMAT})

    def version_dir(self, version: int) -> Path:
        return self.path / "versions" / f"{version:04d}"

    def versions(self) -> list[int]:
        d = self.path / "versions"
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []

    def load_version(self, version: int) -> "TrainedModel | DetectionModel":
        d = self.version_dir(version)
        if not d.is_dir():
            raise NotFound(f"version {version} of {str(self.path)!r} does not exist; versions: {self.versions()}")
        return load_model(d, read_tensors(d / "model.safetensors"))

    def publish_version(
        self,
        model: "TrainedModel | DetectionModel",
        *,
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        val_frame: pd.DataFrame,
    ) -> int:
        """Write a new version (staged, then renamed into place) and make it current."""
        versions_root = self.path / "versions"
        remove_stale_staging(versions_root)
        version = (max(self.versions()) + 1) if self.versions() else 1
        staging = fresh_staging_dir(versions_root, f"{version:04d}")
        model.write_assets(staging)
        write_tensors(staging / "model.safetensors", model.net.state_dict(), metadata={"format": "pt"})
        write_json(staging / "metrics.json", metrics)
        write_json(staging / "lineage.json", {**lineage, "version": version})
        val_frame.to_parquet(staging / "val.parquet", index=False)
        publish_dir(staging, self.version_dir(version))
        meta = self.meta()
        meta["current_version"] = version
        self.write_meta(meta)
        return version

    def clear_run(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
