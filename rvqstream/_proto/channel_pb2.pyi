from rvqstream._proto import frame_pb2 as _frame_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATE_UNSPECIFIED: _ClassVar[MessageState]
    MESSAGE_STATE_COMPLETE: _ClassVar[MessageState]
    MESSAGE_STATE_STREAMING: _ClassVar[MessageState]
    MESSAGE_STATE_ABORTED: _ClassVar[MessageState]
MESSAGE_STATE_UNSPECIFIED: MessageState
MESSAGE_STATE_COMPLETE: MessageState
MESSAGE_STATE_STREAMING: MessageState
MESSAGE_STATE_ABORTED: MessageState

class PublishConfig(_message.Message):
    __slots__ = ("channel", "tier", "producer_id", "drop_near_duplicates")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    DROP_NEAR_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    tier: _frame_pb2.Tier
    producer_id: str
    drop_near_duplicates: bool
    def __init__(self, channel: _Optional[str] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., producer_id: _Optional[str] = ..., drop_near_duplicates: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("offset", "sequence", "stored_bytes", "duplicate", "near_duplicate", "near_duplicate_of", "dropped")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    sequence: int
    stored_bytes: int
    duplicate: bool
    near_duplicate: bool
    near_duplicate_of: int
    dropped: bool
    def __init__(self, offset: _Optional[int] = ..., sequence: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., duplicate: _Optional[bool] = ..., near_duplicate: _Optional[bool] = ..., near_duplicate_of: _Optional[int] = ..., dropped: _Optional[bool] = ...) -> None: ...

class PublishStreamConfig(_message.Message):
    __slots__ = ("channel", "tier", "max_delay_ms", "producer_id", "sequence")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    tier: _frame_pb2.Tier
    max_delay_ms: int
    producer_id: str
    sequence: int
    def __init__(self, channel: _Optional[str] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., max_delay_ms: _Optional[int] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class PublishStreamRequest(_message.Message):
    __slots__ = ("config", "chunk")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    config: PublishStreamConfig
    chunk: _frame_pb2.TextChunk
    def __init__(self, config: _Optional[_Union[PublishStreamConfig, _Mapping]] = ..., chunk: _Optional[_Union[_frame_pb2.TextChunk, _Mapping]] = ...) -> None: ...

class StreamAck(_message.Message):
    __slots__ = ("offset", "sequence", "durable_bytes", "stored_bytes", "state", "near_duplicate", "near_duplicate_of")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DURABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    offset: int
    sequence: int
    durable_bytes: int
    stored_bytes: int
    state: MessageState
    near_duplicate: bool
    near_duplicate_of: int
    def __init__(self, offset: _Optional[int] = ..., sequence: _Optional[int] = ..., durable_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., state: _Optional[_Union[MessageState, str]] = ..., near_duplicate: _Optional[bool] = ..., near_duplicate_of: _Optional[int] = ...) -> None: ...

class PublishStreamHeader(_message.Message):
    __slots__ = ("stream", "resume")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    stream: _frame_pb2.StreamHeader
    resume: StreamAck
    def __init__(self, stream: _Optional[_Union[_frame_pb2.StreamHeader, _Mapping]] = ..., resume: _Optional[_Union[StreamAck, _Mapping]] = ...) -> None: ...

class PublishStreamResponse(_message.Message):
    __slots__ = ("header", "ack")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    header: PublishStreamHeader
    ack: StreamAck
    def __init__(self, header: _Optional[_Union[PublishStreamHeader, _Mapping]] = ..., ack: _Optional[_Union[StreamAck, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("channel", "from_offset", "from_part")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    FROM_PART_FIELD_NUMBER: _ClassVar[int]
    channel: str
    from_offset: int
    from_part: int
    def __init__(self, channel: _Optional[str] = ..., from_offset: _Optional[int] = ..., from_part: _Optional[int] = ...) -> None: ...

class ChannelMessage(_message.Message):
    __slots__ = ("offset", "model_id", "blob", "streamed", "state", "tier", "first_part", "frame_batches")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    FIRST_PART_FIELD_NUMBER: _ClassVar[int]
    FRAME_BATCHES_FIELD_NUMBER: _ClassVar[int]
    offset: int
    model_id: str
    blob: bytes
    streamed: bool
    state: MessageState
    tier: _frame_pb2.Tier
    first_part: int
    frame_batches: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, offset: _Optional[int] = ..., model_id: _Optional[str] = ..., blob: _Optional[bytes] = ..., streamed: _Optional[bool] = ..., state: _Optional[_Union[MessageState, str]] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., first_part: _Optional[int] = ..., frame_batches: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("message", "frames", "offset_delta")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_DELTA_FIELD_NUMBER: _ClassVar[int]
    message: ChannelMessage
    frames: bytes
    offset_delta: int
    def __init__(self, message: _Optional[_Union[ChannelMessage, _Mapping]] = ..., frames: _Optional[bytes] = ..., offset_delta: _Optional[int] = ...) -> None: ...

class FetchMessageRequest(_message.Message):
    __slots__ = ("channel", "offset")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    channel: str
    offset: int
    def __init__(self, channel: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FetchMessageResponse(_message.Message):
    __slots__ = ("offset", "model_id", "fallback_blob", "state")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_BLOB_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    model_id: str
    fallback_blob: bytes
    state: MessageState
    def __init__(self, offset: _Optional[int] = ..., model_id: _Optional[str] = ..., fallback_blob: _Optional[bytes] = ..., state: _Optional[_Union[MessageState, str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("channel", "text", "code", "k", "stages")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    text: str
    code: bytes
    k: int
    stages: int
    def __init__(self, channel: _Optional[str] = ..., text: _Optional[str] = ..., code: _Optional[bytes] = ..., k: _Optional[int] = ..., stages: _Optional[int] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("offset", "score", "near_duplicate", "near_duplicate_of")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    offset: int
    score: float
    near_duplicate: bool
    near_duplicate_of: int
    def __init__(self, offset: _Optional[int] = ..., score: _Optional[float] = ..., near_duplicate: _Optional[bool] = ..., near_duplicate_of: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "code_model_id", "stages", "searched")
    HITS_FIELD_NUMBER: _ClassVar[int]
    CODE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    SEARCHED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    code_model_id: str
    stages: int
    searched: int
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., code_model_id: _Optional[str] = ..., stages: _Optional[int] = ..., searched: _Optional[int] = ...) -> None: ...

class SyncCodesRequest(_message.Message):
    __slots__ = ("channel", "from_offset", "stages")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    from_offset: int
    stages: int
    def __init__(self, channel: _Optional[str] = ..., from_offset: _Optional[int] = ..., stages: _Optional[int] = ...) -> None: ...

class SyncCodesResponse(_message.Message):
    __slots__ = ("code_model_id", "stages", "first_offset", "codes", "next_offset")
    CODE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    code_model_id: str
    stages: int
    first_offset: int
    codes: bytes
    next_offset: int
    def __init__(self, code_model_id: _Optional[str] = ..., stages: _Optional[int] = ..., first_offset: _Optional[int] = ..., codes: _Optional[bytes] = ..., next_offset: _Optional[int] = ...) -> None: ...
