from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_EXACT: _ClassVar[Tier]
    TIER_SEMANTIC: _ClassVar[Tier]
TIER_UNSPECIFIED: Tier
TIER_EXACT: Tier
TIER_SEMANTIC: Tier

class StreamHeader(_message.Message):
    __slots__ = ("model_id", "tier", "stage_count", "max_delay_ms")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    tier: Tier
    stage_count: int
    max_delay_ms: int
    def __init__(self, model_id: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., stage_count: _Optional[int] = ..., max_delay_ms: _Optional[int] = ...) -> None: ...

class TextChunk(_message.Message):
    __slots__ = ("text_utf8", "flush", "end_message")
    TEXT_UTF8_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    END_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    text_utf8: bytes
    flush: bool
    end_message: bool
    def __init__(self, text_utf8: _Optional[bytes] = ..., flush: _Optional[bool] = ..., end_message: _Optional[bool] = ...) -> None: ...
