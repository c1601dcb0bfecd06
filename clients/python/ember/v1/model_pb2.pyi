import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_TRAINING: _ClassVar[ModelState]
    MODEL_STATE_UNFINISHED: _ClassVar[ModelState]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_TRAINING: ModelState
MODEL_STATE_UNFINISHED: ModelState

class Model(_message.Message):
    __slots__ = ("name", "label", "problem_type", "eval_metric", "current_version", "versions", "training", "classes", "state", "aliases")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVAL_METRIC_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    label: str
    problem_type: str
    eval_metric: str
    current_version: int
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    training: bool
    classes: _containers.RepeatedScalarFieldContainer[str]
    state: ModelState
    aliases: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., label: _Optional[str] = ..., problem_type: _Optional[str] = ..., eval_metric: _Optional[str] = ..., current_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., training: _Optional[bool] = ..., classes: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[ModelState, str]] = ..., aliases: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("version", "parent_version", "val_score", "train_digest", "job_id", "create_time", "forgetting_before", "forgetting_after")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FORGETTING_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FORGETTING_AFTER_FIELD_NUMBER: _ClassVar[int]
    version: int
    parent_version: int
    val_score: float
    train_digest: str
    job_id: str
    create_time: _timestamp_pb2.Timestamp
    forgetting_before: float
    forgetting_after: float
    def __init__(self, version: _Optional[int] = ..., parent_version: _Optional[int] = ..., val_score: _Optional[float] = ..., train_digest: _Optional[str] = ..., job_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., forgetting_before: _Optional[float] = ..., forgetting_after: _Optional[float] = ...) -> None: ...
