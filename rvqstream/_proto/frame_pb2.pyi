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

class FrameKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_KIND_UNSPECIFIED: _ClassVar[FrameKind]
    FRAME_KIND_MODEL: _ClassVar[FrameKind]
    FRAME_KIND_ZSTD: _ClassVar[FrameKind]
    FRAME_KIND_RAW: _ClassVar[FrameKind]
TIER_UNSPECIFIED: Tier
TIER_EXACT: Tier
TIER_SEMANTIC: Tier
FRAME_KIND_UNSPECIFIED: FrameKind
FRAME_KIND_MODEL: FrameKind
FRAME_KIND_ZSTD: FrameKind
FRAME_KIND_RAW: FrameKind

class Frame(_message.Message):
    __slots__ = ("seq", "kind", "token_count", "stage_count", "payload", "message_start", "message_end", "degraded")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    STAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_START_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_END_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: FrameKind
    token_count: int
    stage_count: int
    payload: bytes
    message_start: bool
    message_end: bool
    degraded: bool
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[FrameKind, str]] = ..., token_count: _Optional[int] = ..., stage_count: _Optional[int] = ..., payload: _Optional[bytes] = ..., message_start: _Optional[bool] = ..., message_end: _Optional[bool] = ..., degraded: _Optional[bool] = ...) -> None: ...

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
