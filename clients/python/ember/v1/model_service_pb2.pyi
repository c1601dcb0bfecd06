from ember.v1 import job_pb2 as _job_pb2
from ember.v1 import model_pb2 as _model_pb2
from ember.v1 import table_pb2 as _table_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FitOptions(_message.Message):
    __slots__ = ("label", "problem_type", "eval_metric", "time_limit_s", "hyperparameters", "seed", "column_types", "scale")
    class HyperparametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ColumnTypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVAL_METRIC_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    COLUMN_TYPES_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    label: str
    problem_type: str
    eval_metric: str
    time_limit_s: float
    hyperparameters: _containers.ScalarMap[str, str]
    seed: int
    column_types: _containers.ScalarMap[str, str]
    scale: ScaleOptions
    def __init__(self, label: _Optional[str] = ..., problem_type: _Optional[str] = ..., eval_metric: _Optional[str] = ..., time_limit_s: _Optional[float] = ..., hyperparameters: _Optional[_Mapping[str, str]] = ..., seed: _Optional[int] = ..., column_types: _Optional[_Mapping[str, str]] = ..., scale: _Optional[_Union[ScaleOptions, _Mapping]] = ...) -> None: ...

class ScaleOptions(_message.Message):
    __slots__ = ("devices", "num_nodes", "strategy")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NUM_NODES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    devices: int
    num_nodes: int
    strategy: str
    def __init__(self, devices: _Optional[int] = ..., num_nodes: _Optional[int] = ..., strategy: _Optional[str] = ...) -> None: ...

class FitRequest(_message.Message):
    __slots__ = ("model_name", "train_data", "tuning_data", "options")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DATA_FIELD_NUMBER: _ClassVar[int]
    TUNING_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    train_data: _table_pb2.TableData
    tuning_data: _table_pb2.TableData
    options: FitOptions
    def __init__(self, model_name: _Optional[str] = ..., train_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., tuning_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., options: _Optional[_Union[FitOptions, _Mapping]] = ...) -> None: ...

class FitResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("model_name", "train_data", "tuning_data", "scale")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DATA_FIELD_NUMBER: _ClassVar[int]
    TUNING_DATA_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    train_data: _table_pb2.TableData
    tuning_data: _table_pb2.TableData
    scale: ScaleOptions
    def __init__(self, model_name: _Optional[str] = ..., train_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., tuning_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., scale: _Optional[_Union[ScaleOptions, _Mapping]] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("model_name", "train_data", "tuning_data", "options", "dump_artifact_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DATA_FIELD_NUMBER: _ClassVar[int]
    TUNING_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DUMP_ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    train_data: _table_pb2.TableData
    tuning_data: _table_pb2.TableData
    options: FitOptions
    dump_artifact_id: str
    def __init__(self, model_name: _Optional[str] = ..., train_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., tuning_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., options: _Optional[_Union[FitOptions, _Mapping]] = ..., dump_artifact_id: _Optional[str] = ...) -> None: ...

class TransferResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("id", "kind", "model_name", "version", "files", "path", "size_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    model_name: str
    version: int
    files: _containers.RepeatedScalarFieldContainer[str]
    path: str
    size_bytes: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., files: _Optional[_Iterable[str]] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DumpRequest(_message.Message):
    __slots__ = ("model_name", "version", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...

class DumpResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("model_name", "version", "include_backbones", "parity_data", "opset_version", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_BACKBONES_FIELD_NUMBER: _ClassVar[int]
    PARITY_DATA_FIELD_NUMBER: _ClassVar[int]
    OPSET_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    include_backbones: bool
    parity_data: _table_pb2.TableData
    opset_version: int
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., include_backbones: _Optional[bool] = ..., parity_data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., opset_version: _Optional[int] = ..., alias: _Optional[str] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: Artifact
    def __init__(self, artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model_name", "version", "data", "with_probabilities", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WITH_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    data: _table_pb2.TableData
    with_probabilities: bool
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., with_probabilities: _Optional[bool] = ..., alias: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("labels", "values", "classes", "probabilities", "version", "detections")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    classes: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    version: int
    detections: _containers.RepeatedCompositeFieldContainer[ImageDetections]
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ..., classes: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., version: _Optional[int] = ..., detections: _Optional[_Iterable[_Union[ImageDetections, _Mapping]]] = ...) -> None: ...

class ImageDetections(_message.Message):
    __slots__ = ("boxes",)
    BOXES_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedCompositeFieldContainer[DetectedBox]
    def __init__(self, boxes: _Optional[_Iterable[_Union[DetectedBox, _Mapping]]] = ...) -> None: ...

class DetectedBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2", "score", "label")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    label: str
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ..., score: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model_name", "version", "data", "metrics", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    data: _table_pb2.TableData
    metrics: _containers.RepeatedScalarFieldContainer[str]
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., metrics: _Optional[_Iterable[str]] = ..., alias: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("scores", "version")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.ScalarMap[str, float]
    version: int
    def __init__(self, scores: _Optional[_Mapping[str, float]] = ..., version: _Optional[int] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model_name", "version", "data", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    data: _table_pb2.TableData
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., alias: _Optional[str] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("dim", "values")
    DIM_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    dim: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, dim: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerStatsResponse(_message.Message):
    __slots__ = ("cache_hits", "cache_misses", "cache_evictions", "cache_bytes", "cache_budget_bytes", "cached", "daemon_id", "daemons")
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    CACHE_EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    DAEMON_ID_FIELD_NUMBER: _ClassVar[int]
    DAEMONS_FIELD_NUMBER: _ClassVar[int]
    cache_hits: int
    cache_misses: int
    cache_evictions: int
    cache_bytes: int
    cache_budget_bytes: int
    cached: _containers.RepeatedScalarFieldContainer[str]
    daemon_id: str
    daemons: _containers.RepeatedCompositeFieldContainer[DaemonInfo]
    def __init__(self, cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., cache_evictions: _Optional[int] = ..., cache_bytes: _Optional[int] = ..., cache_budget_bytes: _Optional[int] = ..., cached: _Optional[_Iterable[str]] = ..., daemon_id: _Optional[str] = ..., daemons: _Optional[_Iterable[_Union[DaemonInfo, _Mapping]]] = ...) -> None: ...

class DaemonInfo(_message.Message):
    __slots__ = ("id", "address", "host", "pid", "heartbeat_age_s", "running_jobs")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    host: str
    pid: int
    heartbeat_age_s: float
    running_jobs: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., heartbeat_age_s: _Optional[float] = ..., running_jobs: _Optional[int] = ...) -> None: ...

class DeleteVersionRequest(_message.Message):
    __slots__ = ("model_name", "version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    version: int
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class BatchPredictRequest(_message.Message):
    __slots__ = ("model_name", "version", "data", "with_probabilities", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WITH_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    version: int
    data: _table_pb2.TableData
    with_probabilities: bool
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., version: _Optional[int] = ..., data: _Optional[_Union[_table_pb2.TableData, _Mapping]] = ..., with_probabilities: _Optional[bool] = ..., alias: _Optional[str] = ...) -> None: ...

class BatchPredictResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...
