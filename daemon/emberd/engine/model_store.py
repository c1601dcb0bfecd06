"""A predictor's folder on disk, and a trained model loaded from it.

```
<path>/predictor.json            label, problem type, metric, current version (atomic JSON)
<path>/versions/<n>/             immutable once published (staged, then renamed into place)
    model.safetensors            all weights of the network
    schema.json config.json      how rows are read; the hyperparameters (dotted keys)
    hf_text/  timm_image/        backbone configs + tokenizer files (architecture, no weights)
    mmdet_image/config.json      a detector's mmdet config (object_detection models)
    metrics.json lineage.json    validation score and history; parent version, data digest,
                                 the run (``run_id``) and job (``job_id``) that published it
    val.parquet                  the validation rows, re-scored after the next continued fit
<path>/run/run.json, last.ckpt   the current or last training run (for resume)
```

Publishing is exactly-once per run: a run has an id (``run_id`` in run.json, the daemon's job
id for a daemon fit), the version it publishes records it in lineage.json, and publishing
again for a run that already has a version returns that version. A kill between the
version's rename and the updates after it (predictor.json's current version, run.json's
status) is settled by ``settle_run`` on the next load or daemon start.
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
from .errors import DataLoss, FailedPrecondition, NotFound
from .faults import fault
from .features import Collator, Encoded, SpecialTokens, encode_table, pad_multiple_for
from .models import MultimodalNet, build_net
from .storage import (
    fresh_staging_dir,
    fsync_dir,
    publish_dir,
    read_json,
    read_tensors,
    remove_stale_staging,
    write_json,
    write_tensors,
)

FORMAT = 1
# what every published version holds (checked before loading: a missing one is DATA_LOSS)
VERSION_FILES = ("model.safetensors", "schema.json", "config.json", "lineage.json")


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
        self.check_version_files(version)
        return load_model(d, read_tensors(d / "model.safetensors"))

    def check_version_files(self, version: int) -> None:
        """DataLoss naming the first file of a published version that is gone."""
        d = self.version_dir(version)
        for name in VERSION_FILES:
            if not (d / name).is_file():
                raise DataLoss(
                    f"version {version} of {self.path.name!r} is damaged: {d / name} is missing (deleted outside Ember?); "
                    "DeleteVersion it, or restore the file"
                )

    def lineage(self, version: int) -> dict[str, Any]:
        try:
            return read_json(self.version_dir(version) / "lineage.json")
        except (OSError, ValueError):
            return {}

    def version_of_run(self, run_id: str | None) -> int | None:
        """The version the run ``run_id`` published, if any (the idempotency check)."""
        if not run_id:
            return None
        return next((v for v in self.versions() if self.lineage(v).get("run_id") == run_id), None)

    def settle_run(self) -> int | None:
        """Finish the bookkeeping of a run that published its version but was killed before
        recording it (current version, run.json, checkpoint); returns that version, if any.
        Only while no worker writes this folder (a load, a daemon start, before a Resume)."""
        run_path = self.run_dir / "run.json"
        if not run_path.exists():
            return None
        try:
            run = read_json(run_path)
        except (OSError, ValueError):
            return None
        if run.get("status") != "running":
            return None
        version = self.version_of_run(run.get("run_id"))
        if version is None:
            return None
        meta = self.meta()
        if (meta.get("current_version") or 0) < version:
            meta["current_version"] = version
            self.write_meta(meta)
        write_json(run_path, {**run, "status": "succeeded", "version": version})
        (self.run_dir / "last.ckpt").unlink(missing_ok=True)
        return version

    def delete_version(self, version: int) -> None:
        """Remove a version's folder: one rename out of ``versions/``, then the files."""
        d = self.version_dir(version)
        if d.is_dir():
            trash = d.parent / f".{d.name}.{os.getpid()}.deleted"
            os.rename(d, trash)
            fsync_dir(d.parent)
            shutil.rmtree(trash, ignore_errors=True)

    def publish_version(
        self,
        model: "TrainedModel | DetectionModel",
        *,
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        val_frame: pd.DataFrame,
    ) -> int:
        """Write a new version (staged, then renamed into place) and make it current.
        Once per run: if ``lineage["run_id"]`` already published a version, that one is
        made current (if it is not yet) and returned, and nothing is written."""
        versions_root = self.path / "versions"
        done = self.version_of_run(lineage.get("run_id"))
        if done is not None:
            meta = self.meta()
            if (meta.get("current_version") or 0) < done:
                self.write_meta({**meta, "current_version": done})
            return done
        remove_stale_staging(versions_root)
        version = (max(self.versions()) + 1) if self.versions() else 1
        staging = fresh_staging_dir(versions_root, f"{version:04d}")
        model.write_assets(staging)
        write_tensors(staging / "model.safetensors", model.net.state_dict(), metadata={"format": "pt"})
        write_json(staging / "metrics.json", metrics)
        write_json(staging / "lineage.json", {**lineage, "version": version})
        val_frame.to_parquet(staging / "val.parquet", index=False)
        publish_dir(staging, self.version_dir(version))
        fault("publish.renamed")
        meta = self.meta()
        meta["current_version"] = version
        self.write_meta(meta)
        return version

    def clear_run(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
