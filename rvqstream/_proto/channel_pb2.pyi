from rvqstream._proto import frame_pb2 as _frame_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PublishConfig(_message.Message):
    __slots__ = ("channel", "tier", "producer_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    tier: _frame_pb2.Tier
    producer_id: str
    def __init__(self, channel: _Optional[str] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., producer_id: _Optional[str] = ...) -> None: ...

class PublishMessage(_message.Message):
    __slots__ = ("text_utf8", "sequence")
    TEXT_UTF8_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    text_utf8: bytes
    sequence: int
    def __init__(self, text_utf8: _Optional[bytes] = ..., sequence: _Optional[int] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("config", "message")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    config: PublishConfig
    message: PublishMessage
    def __init__(self, config: _Optional[_Union[PublishConfig, _Mapping]] = ..., message: _Optional[_Union[PublishMessage, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("offset", "sequence", "stored_bytes", "duplicate")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    sequence: int
    stored_bytes: int
    duplicate: bool
    def __init__(self, offset: _Optional[int] = ..., sequence: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("channel", "from_offset")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    channel: str
    from_offset: int
    def __init__(self, channel: _Optional[str] = ..., from_offset: _Optional[int] = ...) -> None: ...

class ChannelMessage(_message.Message):
    __slots__ = ("offset", "model_id", "blob")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    offset: int
    model_id: str
    blob: bytes
    def __init__(self, offset: _Optional[int] = ..., model_id: _Optional[str] = ..., blob: _Optional[bytes] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: ChannelMessage
    def __init__(self, message: _Optional[_Union[ChannelMessage, _Mapping]] = ...) -> None: ...

class FetchMessageRequest(_message.Message):
    __slots__ = ("channel", "offset")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    channel: str
    offset: int
    def __init__(self, channel: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FetchMessageResponse(_message.Message):
    __slots__ = ("offset", "model_id", "fallback_blob")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_BLOB_FIELD_NUMBER: _ClassVar[int]
    offset: int
    model_id: str
    fallback_blob: bytes
    def __init__(self, offset: _Optional[int] = ..., model_id: _Optional[str] = ..., fallback_blob: _Optional[bytes] = ...) -> None: ...
