from rvqstream._proto import frame_pb2 as _frame_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogEvent(_message.Message):
    __slots__ = ("channel", "writer", "append", "part", "abort", "touch", "retain")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    TOUCH_FIELD_NUMBER: _ClassVar[int]
    RETAIN_FIELD_NUMBER: _ClassVar[int]
    channel: str
    writer: str
    append: LogAppend
    part: LogPart
    abort: LogAbort
    touch: LogTouch
    retain: LogRetain
    def __init__(self, channel: _Optional[str] = ..., writer: _Optional[str] = ..., append: _Optional[_Union[LogAppend, _Mapping]] = ..., part: _Optional[_Union[LogPart, _Mapping]] = ..., abort: _Optional[_Union[LogAbort, _Mapping]] = ..., touch: _Optional[_Union[LogTouch, _Mapping]] = ..., retain: _Optional[_Union[LogRetain, _Mapping]] = ...) -> None: ...

class LogCode(_message.Message):
    __slots__ = ("model_id", "code", "near_of", "near_record")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    NEAR_OF_FIELD_NUMBER: _ClassVar[int]
    NEAR_RECORD_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    code: bytes
    near_of: int
    near_record: int
    def __init__(self, model_id: _Optional[str] = ..., code: _Optional[bytes] = ..., near_of: _Optional[int] = ..., near_record: _Optional[int] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("blob", "model_id", "producer_id", "sequence", "code", "duplicate_of")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    blob: bytes
    model_id: str
    producer_id: str
    sequence: int
    code: LogCode
    duplicate_of: int
    def __init__(self, blob: _Optional[bytes] = ..., model_id: _Optional[str] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., code: _Optional[_Union[LogCode, _Mapping]] = ..., duplicate_of: _Optional[int] = ...) -> None: ...

class LogAppend(_message.Message):
    __slots__ = ("first_offset", "records")
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    first_offset: int
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, first_offset: _Optional[int] = ..., records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class LogPart(_message.Message):
    __slots__ = ("offset", "creates", "producer_id", "sequence", "model_id", "tier", "index", "batch", "text_bytes", "crc", "end", "code")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CREATES_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CRC_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    creates: bool
    producer_id: str
    sequence: int
    model_id: str
    tier: _frame_pb2.Tier
    index: int
    batch: bytes
    text_bytes: int
    crc: int
    end: bool
    code: LogCode
    def __init__(self, offset: _Optional[int] = ..., creates: _Optional[bool] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., model_id: _Optional[str] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., index: _Optional[int] = ..., batch: _Optional[bytes] = ..., text_bytes: _Optional[int] = ..., crc: _Optional[int] = ..., end: _Optional[bool] = ..., code: _Optional[_Union[LogCode, _Mapping]] = ...) -> None: ...

class LogAbort(_message.Message):
    __slots__ = ("offset", "code")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    code: LogCode
    def __init__(self, offset: _Optional[int] = ..., code: _Optional[_Union[LogCode, _Mapping]] = ...) -> None: ...

class LogTouch(_message.Message):
    __slots__ = ("offset",)
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    offset: int
    def __init__(self, offset: _Optional[int] = ...) -> None: ...

class LogRetain(_message.Message):
    __slots__ = ("first_offset",)
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    first_offset: int
    def __init__(self, first_offset: _Optional[int] = ...) -> None: ...
