"""Tables in, typed columns out: reading frames, inferring the problem type and the role of
each column (text, image, numeric, categorical), and the label encoding.

Everything inferred here is stored as JSON (``Schema.to_json``) so a loaded model encodes
new rows exactly as at training time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["load_table", "register_table_reader", "read_jsonl", "records_frame", "parse_json", "numeric_values", "Schema", "infer_schema", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
PROBLEM_TYPES = ("binary", "multiclass", "regression")


MAX_JSON_DEPTH = 16  # nesting a JSON value from a caller may have (detection rows need 4)


def json_depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and objects (a scalar is 0)."""
    depth, level = 0, [(value, 1)]
    while level:
        v, d = level.pop()
        if isinstance(v, (list, dict)):
            depth = max(depth, d)
            level.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return depth


class JsonTooDeep(InvalidArgument):
    """JSON from a caller that nests deeper than allowed."""


def parse_json(text: str | bytes, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A caller's JSON text parsed, refused as INVALID_ARGUMENT (naming ``what``) if it is
    not JSON or nests deeper than ``max_depth`` (never a RecursionError)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTooDeep(f"{what}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as e:
        raise InvalidArgument(f"{what} is not JSON: {e}") from None
    if json_depth(value) > max_depth:
        raise JsonTooDeep(f"{what}: JSON nested deeper than {max_depth} levels")
    return value


def numeric_values(series: pd.Series, column: str, what: str = "data") -> np.ndarray:
    """A numeric column as float64, missing cells as NaN. A cell that holds something other
    than a finite number (a word, a list, inf) is INVALID_ARGUMENT naming its row: it is
    never quietly read as missing (that is, as the column's mean)."""
    v = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    bad = (np.isnan(v) & series.notna().to_numpy()) | np.isinf(v)
    if series.dtype == object:  # JSON's true/false among numbers is a mistake, not 1/0
        bad |= series.map(lambda c: isinstance(c, (bool, np.bool_))).to_numpy(bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cell = series.iloc[i]
        shown = repr(cell) if len(repr(cell)) <= 60 else repr(cell)[:57] + "..."
        raise InvalidArgument(
            f"{what}: numeric column {column!r} holds {shown} at row {i} ({int(bad.sum())} such cell(s)); "
            "give finite numbers, or leave the cell empty for a missing value"
        )
    return v


def records_frame(records: Any, what: str) -> pd.DataFrame:
    """Rows from parsed JSON (a list of objects, column -> value), values kept as JSON typed
    them: nested lists (detection boxes) stay lists."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidArgument(f"{what}: JSON rows must be objects (column -> value), one per row")
    if not records:
        raise InvalidArgument(f"{what} is empty: give at least one row")
    return pd.DataFrame.from_records(records)


def read_jsonl(path: str | os.PathLike, what: str = "data") -> pd.DataFrame:
    """A JSON Lines file (one object per line; blank lines skipped) as a frame."""
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                records.append(parse_json(line, f"{what}: line {n}"))
    return records_frame(records, what)


# ---- table readers: a file's suffix to the function that reads it -------------------------
TableReader = Callable[[Path, str], pd.DataFrame]  # (path, what the caller calls it) -> rows
_READERS: dict[str, TableReader] = {}
_FORMATS: list[str] = []  # what the readers read, for the error naming them


def register_table_reader(suffixes: Sequence[str], reader: TableReader, name: str) -> None:
    """``load_table`` reads paths ending in one of ``suffixes`` (lower case, with the dot)
    with ``reader``; ``name`` says what they hold, for the refusal of other files. A
    problem type with its own file format registers it (detection: COCO annotations)."""
    for suffix in suffixes:
        _READERS[suffix] = reader
    _FORMATS.append(name)


register_table_reader((".parquet", ".pq"), lambda path, what: pd.read_parquet(path), ".parquet")
register_table_reader((".csv",), lambda path, what: pd.read_csv(path), ".csv")
register_table_reader((".tsv", ".tab"), lambda path, what: pd.read_csv(path, sep="\t"), ".tsv")
register_table_reader((".jsonl", ".ndjson"), read_jsonl, ".jsonl")


def load_table(data: pd.DataFrame | str | os.PathLike, *, what: str = "data") -> pd.DataFrame:
    """A DataFrame as given, or read from a path by the reader registered for its suffix
    (Parquet, CSV, TSV, JSON Lines; COCO-style annotations once ``detection.data`` is loaded,
    as importing ``emberd.engine`` does)."""
    if isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.exists():
            raise NotFound(f"{what}: no such file {str(path)!r}")
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise InvalidArgument(f"{what}: cannot read {path.name!r}; give a {', '.join(_FORMATS)} file or a DataFrame")
        df = reader(path, what)
    else:
        raise InvalidArgument(f"{what}: expected a pandas DataFrame or a file path, got {type(data).__name__}")
    if len(df) == 0:
        raise InvalidArgument(f"{what} is empty: give at least one row")
    return df.reset_index(drop=True)


def _to_py(v: Any) -> Any:
    """A JSON-safe Python scalar for a label value."""
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class Schema:
    """How a model reads a table: which column is what, and how labels are encoded."""

    label: str
    problem_type: str
    text: tuple[str, ...] = ()
    image: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    classes: tuple[Any, ...] = ()  # class values in output order (classification)
    label_mean: float = 0.0  # regression targets are standardized for training
    label_std: float = 1.0
    numeric_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        return 1 if self.problem_type == "regression" else len(self.classes)

    @property
    def modalities(self) -> list[str]:
        return [m for m in ("text", "image", "numeric", "categorical") if getattr(self, m)]

    @property
    def feature_columns(self) -> list[str]:
        return [*self.text, *self.image, *self.numeric, *self.categorical]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["numeric_stats"] = {k: list(v) for k, v in self.numeric_stats.items()}
        d["categories"] = {k: list(v) for k, v in self.categories.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Schema":
        d = dict(d)
        for k in ("text", "image", "numeric", "categorical", "classes"):
            d[k] = tuple(d[k])
        d["numeric_stats"] = {k: tuple(v) for k, v in d["numeric_stats"].items()}
        d["categories"] = {k: tuple(v) for k, v in d["categories"].items()}
        return cls(**d)

    # ---- labels -------------------------------------------------------------------------
    def encode_labels(self, y: pd.Series) -> np.ndarray:
        """Class indices (int64) or standardized targets (float32)."""
        if self.problem_type == "regression":
            return ((pd.to_numeric(y).to_numpy(np.float64) - self.label_mean) / self.label_std).astype(np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        values = [_to_py(v) for v in y]
        unknown = sorted({str(v) for v in values if v not in index})
        if unknown:
            raise FailedPrecondition(
                f"label column {self.label!r} has values this model was not trained on: {unknown[:10]}; "
                f"known classes are {list(self.classes)}. Fit a new model (another path) to add classes."
            )
        return np.asarray([index[v] for v in values], dtype=np.int64)

    def decode_labels(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[indices]

    def check_columns(self, df: pd.DataFrame, *, with_label: bool, what: str = "data") -> None:
        need = self.feature_columns + ([self.label] if with_label else [])
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InvalidArgument(
                f"{what} lacks column(s) {missing} that this model reads; it has {list(df.columns)}"
            )
        for col in self.numeric:
            numeric_values(df[col], col, what)


def is_data_uri(value: str) -> bool:
    """An image inline in a text table: ``data:image/png;base64,...`` (RFC 2397)."""
    return value.startswith("data:image/")


def _looks_like_image(series: pd.Series) -> bool:
    sample = series.dropna().head(20)
    if len(sample) == 0:
        return False
    if all(isinstance(v, (bytes, bytearray)) for v in sample):
        return True
    return all(isinstance(v, str) and (v.lower().endswith(IMAGE_SUFFIXES) or is_data_uri(v)) for v in sample)


def _column_role(series: pd.Series) -> str | None:
    s = series.dropna()
    if len(s) == 0:
        return None
    if _looks_like_image(series):
        return "image"
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    as_str = s.astype(str)
    nunique = as_str.nunique()
    words = as_str.str.split().str.len().mean()
    # Few distinct short values are categories; free text has many distinct values or words.
    if nunique <= max(20, 0.05 * len(s)) and words < 5:
        return "categorical"
    return "text"


def infer_problem_type(y: pd.Series) -> str:
    y = y.dropna()
    nunique = y.nunique()
    if nunique <= 1:
        raise InvalidArgument(
            f"label column {y.name!r} has {nunique} distinct value(s); a model needs at least two"
        )
    if nunique == 2:
        return "binary"
    if not pd.api.types.is_numeric_dtype(y):
        return "multiclass"
    values = y.to_numpy(np.float64)
    integral = np.all(np.mod(values, 1) == 0)
    if integral and nunique <= 20:
        return "multiclass"
    return "regression"


def infer_schema(
    df: pd.DataFrame,
    label: str,
    problem_type: str | None = None,
    column_types: dict[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> Schema:
    """Roles of the columns and the label encoding, learned from the training frame."""
    if label not in df.columns:
        raise InvalidArgument(f"label column {label!r} is not in the data; columns are {list(df.columns)}")
    y = df[label]
    if y.isna().all():
        raise InvalidArgument(f"label column {label!r} is all missing (NaN); give labelled rows")
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise InvalidArgument(f"problem_type {problem_type!r} is not one of {PROBLEM_TYPES}")
    problem_type = problem_type or infer_problem_type(y)

    roles: dict[str, list[str]] = {"text": [], "image": [], "numeric": [], "categorical": []}
    column_types = dict(column_types or {})
    for col in df.columns:
        if col == label:
            continue
        role = column_types.get(col) or _column_role(df[col])
        if role is None or role == "ignore":
            continue
        if role not in roles:
            raise InvalidArgument(f"column_types[{col!r}] = {role!r}; use one of {list(roles)} or 'ignore'")
        roles[role].append(col)
    allowed = {"hf_text": "text", "timm_image": "image", "numerical_mlp": "numeric", "categorical_mlp": "categorical"}
    if names is not None:
        keep = {allowed[n] for n in names if n in allowed}
        roles = {k: (v if k in keep else []) for k, v in roles.items()}
    if not any(roles.values()):
        raise InvalidArgument(
            f"no usable feature column besides the label {label!r}; columns are {list(df.columns)}"
        )

    kw: dict[str, Any] = {}
    if problem_type == "regression":
        try:
            v = pd.to_numeric(y.dropna()).to_numpy(np.float64)
        except (TypeError, ValueError):
            raise InvalidArgument(f"problem_type 'regression' needs a numeric label; {label!r} is not") from None
        kw["label_mean"] = float(v.mean())
        kw["label_std"] = float(v.std()) or 1.0
    else:
        classes = sorted({_to_py(v) for v in y.dropna()}, key=lambda c: (str(type(c)), c))
        if problem_type == "binary" and len(classes) != 2:
            raise InvalidArgument(f"problem_type 'binary' needs 2 classes; {label!r} has {len(classes)}")
        kw["classes"] = tuple(classes)
    numeric_stats = {}
    for col in roles["numeric"]:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
        mean = float(np.nanmean(v)) if np.isfinite(v).any() else 0.0
        std = float(np.nanstd(v)) if np.isfinite(v).any() else 1.0
        numeric_stats[col] = (mean, std if std > 0 and math.isfinite(std) else 1.0)
    categories = {
        col: tuple(sorted({str(v) for v in df[col].dropna()})) for col in roles["categorical"]
    }
    return Schema(
        label=label,
        problem_type=problem_type,
        text=tuple(roles["text"]),
        image=tuple(roles["image"]),
        numeric=tuple(roles["numeric"]),
        categorical=tuple(roles["categorical"]),
        numeric_stats=numeric_stats,
        categories=categories,
        **kw,
    )


def drop_unlabelled(df: pd.DataFrame, label: str) -> pd.DataFrame:
    return df[df[label].notna()].reset_index(drop=True)
