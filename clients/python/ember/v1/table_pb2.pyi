from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TableData(_message.Message):
    __slots__ = ("dataset_id", "path", "json_records", "parquet")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    JSON_RECORDS_FIELD_NUMBER: _ClassVar[int]
    PARQUET_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    path: str
    json_records: str
    parquet: bytes
    def __init__(self, dataset_id: _Optional[str] = ..., path: _Optional[str] = ..., json_records: _Optional[str] = ..., parquet: _Optional[bytes] = ...) -> None: ...
