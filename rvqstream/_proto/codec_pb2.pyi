from rvqstream._proto import frame_pb2 as _frame_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodeConfig(_message.Message):
    __slots__ = ("tier", "stage_count", "max_delay_ms", "model_id")
    TIER_FIELD_NUMBER: _ClassVar[int]
    STAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    tier: _frame_pb2.Tier
    stage_count: int
    max_delay_ms: int
    model_id: str
    def __init__(self, tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., stage_count: _Optional[int] = ..., max_delay_ms: _Optional[int] = ..., model_id: _Optional[str] = ...) -> None: ...

class EncodeStreamRequest(_message.Message):
    __slots__ = ("config", "chunk")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    config: EncodeConfig
    chunk: _frame_pb2.TextChunk
    def __init__(self, config: _Optional[_Union[EncodeConfig, _Mapping]] = ..., chunk: _Optional[_Union[_frame_pb2.TextChunk, _Mapping]] = ...) -> None: ...

class EncodeStreamResponse(_message.Message):
    __slots__ = ("header", "frames")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    header: _frame_pb2.StreamHeader
    frames: bytes
    def __init__(self, header: _Optional[_Union[_frame_pb2.StreamHeader, _Mapping]] = ..., frames: _Optional[bytes] = ...) -> None: ...

class DecodeConfig(_message.Message):
    __slots__ = ("model_id", "tier")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    tier: _frame_pb2.Tier
    def __init__(self, model_id: _Optional[str] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ...) -> None: ...

class DecodeStreamRequest(_message.Message):
    __slots__ = ("config", "frames")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    config: DecodeConfig
    frames: bytes
    def __init__(self, config: _Optional[_Union[DecodeConfig, _Mapping]] = ..., frames: _Optional[bytes] = ...) -> None: ...

class DecodeStreamResponse(_message.Message):
    __slots__ = ("text", "message_end")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_END_FIELD_NUMBER: _ClassVar[int]
    text: str
    message_end: bool
    def __init__(self, text: _Optional[str] = ..., message_end: _Optional[bool] = ...) -> None: ...

class CompressRequest(_message.Message):
    __slots__ = ("text_utf8", "tier", "stage_count", "model_id")
    TEXT_UTF8_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    text_utf8: bytes
    tier: _frame_pb2.Tier
    stage_count: int
    model_id: str
    def __init__(self, text_utf8: _Optional[bytes] = ..., tier: _Optional[_Union[_frame_pb2.Tier, str]] = ..., stage_count: _Optional[int] = ..., model_id: _Optional[str] = ...) -> None: ...

class CompressResponse(_message.Message):
    __slots__ = ("blob", "model_id")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    blob: bytes
    model_id: str
    def __init__(self, blob: _Optional[bytes] = ..., model_id: _Optional[str] = ...) -> None: ...

class DecompressRequest(_message.Message):
    __slots__ = ("blob",)
    BLOB_FIELD_NUMBER: _ClassVar[int]
    blob: bytes
    def __init__(self, blob: _Optional[bytes] = ...) -> None: ...

class DecompressResponse(_message.Message):
    __slots__ = ("text", "model_id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    model_id: str
    def __init__(self, text: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ModelFile(_message.Message):
    __slots__ = ("name", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ModelManifest(_message.Message):
    __slots__ = ("model_id", "files")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    files: _containers.RepeatedCompositeFieldContainer[ModelFile]
    def __init__(self, model_id: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ModelFile, _Mapping]]] = ...) -> None: ...

class ModelFileChunk(_message.Message):
    __slots__ = ("name", "offset_bytes", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset_bytes: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., offset_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("manifest", "chunk")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    manifest: ModelManifest
    chunk: ModelFileChunk
    def __init__(self, manifest: _Optional[_Union[ModelManifest, _Mapping]] = ..., chunk: _Optional[_Union[ModelFileChunk, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "size_bytes", "is_default")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    size_bytes: int
    is_default: bool
    def __init__(self, model_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., is_default: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
