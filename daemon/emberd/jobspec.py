"""A job's spec: what the daemon decided a job does, typed and validated once, at
construction. The registry stores it as JSON in the job's row (the kind is the row's own
column, not in the JSON); the daemon hands it to the job's worker process; ``python -m
emberd.worker SPEC.json`` reads it from a file (there the JSON names its ``kind``).

``JobSpec`` holds the kind and one section: ``TrainSpec`` for FIT, TRANSFER and RESUME,
``BatchSpec`` for BATCH_PREDICT. ``to_json`` writes the section's fields flat, the shape
the daemon has always stored, and ``from_json`` reads every shape an older daemon wrote
(keys added since default). Unknown keys, wrong types and missing required fields raise
``JobSpecError`` naming the field.

``Launch`` is how one run of a job starts (its id, the budget's start, the daemon's pid,
environment and read policy, a rank's torchrun variables): it goes to the worker beside
the spec and is never stored. Nothing here imports torch or the engine."""

from __future__ import annotations

import json
import types
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Union, get_args, get_origin, get_type_hints

__all__ = ["TRAINING_KINDS", "JOB_KINDS", "JobSpecError", "TrainSpec", "BatchSpec", "JobSpec", "Launch"]

TRAINING_KINDS = ("FIT", "RESUME", "TRANSFER")
JOB_KINDS = (*TRAINING_KINDS, "BATCH_PREDICT")


class JobSpecError(ValueError):
    """A job spec that is not one the daemon writes; ``field`` names the offending key."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"job spec: {message}")
        self.field = field


def _conforms(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, h) for h in get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is dict:
        _, of = get_args(hint)
        return isinstance(value, dict) and all(isinstance(k, str) and _conforms(v, of) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_types(obj: Any) -> None:
    """Every field of the dataclass ``obj`` holds a value of its annotated type."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _conforms(value, hints[f.name]):
            hint = hints[f.name].__name__ if isinstance(hints[f.name], type) else str(hints[f.name]).replace("typing.", "")
            raise JobSpecError(f"{f.name} must be {hint}, got {type(value).__name__} {value!r:.80}", f.name)


def _from_dict(cls: Any, d: dict[str, Any], kind: str) -> Any:
    """``cls`` from ``d``'s keys: an unknown key or a missing required field is named."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise JobSpecError(f"unknown key {unknown[0]!r} in a {kind} job's spec (known: {', '.join(sorted(known))})", unknown[0])
    missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise JobSpecError(f"{missing[0]} is missing: a {kind} job's spec needs it", missing[0])
    return cls(**d)


@dataclass(frozen=True)
class TrainSpec:
    """A fit, continued fit, transfer or resume, as the Fit/Transfer/Resume RPC decided it."""

    model_dir: str = ""  # the model's folder ("" only in a job rebuilt from a version's lineage)
    label: str = ""  # the column to predict
    problem_type: str | None = None  # the request's, else the plan's
    eval_metric: str | None = None
    train_path: str | None = None  # the kept table; None only in a job rebuilt from disk (Resume asks for train_data)
    train_dataset: str | None = None  # its content id (lineage)
    tuning_path: str | None = None
    time_limit: float | None = None  # seconds; None: no limit
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # with the scale-out keys and confined checkpoint folders
    seed: int = 0
    column_types: dict[str, str] | None = None
    continued: bool = False  # start from the current version (decided by the daemon: the ranks must agree)
    scale: dict[str, Any] | None = None  # ``engine.distributed.Scale.to_dict()``: the ranks the daemon starts
    rebuilt: bool = False  # a job row restored from the model's folder after the registry was lost (written only when true)

    def __post_init__(self) -> None:
        _check_types(self)
        if not self.rebuilt:
            for name in ("model_dir", "label", "train_path"):
                if not getattr(self, name):
                    raise JobSpecError(f"{name} is missing: a training job's spec needs it", name)


@dataclass(frozen=True)
class BatchSpec:
    """A batch prediction (``emberd.batch``): every row of ``data_path`` into ``artifacts_dir/artifact_id``."""

    model_dir: str
    model_name: str
    version: int  # the version resolved at the RPC (an alias is not followed later)
    data_path: str  # an uploaded dataset's file, or a path confined to the data roots
    with_proba: bool
    artifacts_dir: str
    artifact_id: str

    def __post_init__(self) -> None:
        _check_types(self)


@dataclass(frozen=True)
class JobSpec:
    kind: str  # one of JOB_KINDS
    train: TrainSpec | None = None  # for TRAINING_KINDS
    batch: BatchSpec | None = None  # for BATCH_PREDICT

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise JobSpecError(f"kind must be one of {', '.join(JOB_KINDS)}, got {self.kind!r}", "kind")
        section, want = ("train", TrainSpec) if self.kind in TRAINING_KINDS else ("batch", BatchSpec)
        if not isinstance(getattr(self, section), want) or getattr(self, "batch" if section == "train" else "train") is not None:
            raise JobSpecError(f"a {self.kind} job has a {want.__name__} ({section}) and nothing else", section)

    @property
    def training(self) -> TrainSpec:
        """The training section (a caller that only handles training kinds)."""
        if self.train is None:
            raise JobSpecError(f"a {self.kind} job does not train", "train")
        return self.train

    @property
    def batch_predict(self) -> BatchSpec:
        """The batch prediction section (a caller that only handles BATCH_PREDICT)."""
        if self.batch is None:
            raise JobSpecError(f"a {self.kind} job is not a batch prediction", "batch")
        return self.batch

    def to_dict(self) -> dict[str, Any]:
        """The section's fields, flat, without the kind (the registry's shape)."""
        section = self.train if self.train is not None else self.batch
        d = {f.name: getattr(section, f.name) for f in fields(section)}  # type: ignore[arg-type]
        if self.train is not None and not self.train.rebuilt:
            del d["rebuilt"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], kind: str | None = None) -> JobSpec:
        """``kind``: the job row's; None: ``d`` names it (a worker's SPEC.json)."""
        if not isinstance(d, dict):
            raise JobSpecError(f"must be a JSON object, got {type(d).__name__}", "spec")
        if kind is None:
            if "kind" not in d:
                raise JobSpecError(f"kind is missing: name one of {', '.join(JOB_KINDS)}", "kind")
            d = dict(d)
            kind = d.pop("kind")
        if kind not in JOB_KINDS:
            raise JobSpecError(f"kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}", "kind")
        if kind in TRAINING_KINDS:
            return cls(kind, train=_from_dict(TrainSpec, d, kind))
        return cls(kind, batch=_from_dict(BatchSpec, d, kind))

    @classmethod
    def from_json(cls, text: str, kind: str | None = None) -> JobSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise JobSpecError(f"not JSON: {e}", "spec") from None
        return cls.from_dict(d, kind)

    def with_train(self, **changes: Any) -> JobSpec:
        """This spec with some training fields changed (validated again)."""
        return replace(self, train=replace(self.training, **changes))


@dataclass(frozen=True)
class Launch:
    """How one run of a job starts in its worker process; never stored."""

    job_id: str | None = None
    torch_threads: int = 0  # 0: torch's default
    budget_started: float | None = None  # time.monotonic() as the daemon started the job: the time limit runs from here
    daemon_pid: int | None = None  # the worker dies with this process
    environ: dict[str, str] | None = None  # the daemon's environment (a fork of the forkserver has its own)
    read_policy: dict[str, Any] | None = None  # ``ReadPolicy.to_dict()``: the paths in the data stay confined
    dist_env: dict[str, str] = field(default_factory=dict)  # this rank's torchrun variables (none for one process)

    def __post_init__(self) -> None:
        _check_types(self)
