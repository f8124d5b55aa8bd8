"""Plain result types of the SDK (no generated protobuf type reaches the caller)."""

from __future__ import annotations

from dataclasses import dataclass

from rvqstream.models import Frame, Tier


@dataclass(frozen=True)
class Message:
    """A channel message, decoded locally."""

    offset: int            # dense per-channel offset
    text: str
    model_id: str          # model that compressed it
    compressed_bytes: int  # size of the blob as stored and sent
    fallback: bool         # the blob failed its check here and the message was refetched in fallback form
    wire_bytes: int = 0    # size of the gRPC message that carried it, framing included


@dataclass(frozen=True)
class EncodedFrame:
    """A frame of an encode stream, with the stream facts needed to decode it."""

    frame: Frame
    model_id: str
    tier: Tier
    degraded: bool         # the server capped its stages to meet the latency budget
    wire_bytes: int        # size of its gRPC message on the wire, framing included


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    size_bytes: int
    is_default: bool


FLUSH = object()        # in ``encode_stream``'s chunks: emit buffered text now, in a short frame
END_MESSAGE = object()  # in ``encode_stream``'s chunks: the text so far completes a message
