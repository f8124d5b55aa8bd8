"""Plain result types of the SDK (no generated protobuf type reaches the caller)."""

from __future__ import annotations

from dataclasses import dataclass

from rvqstream.models import Tier


@dataclass(frozen=True)
class Message:
    """A channel message, decoded locally."""

    offset: int            # dense per-channel offset
    text: str
    model_id: str          # model that compressed it
    compressed_bytes: int  # size of the blob as stored and sent
    fallback: bool         # the message failed its check here and was refetched in fallback form
    wire_bytes: int = 0    # size of the gRPC messages that carried it, framing included
    aborted: bool = False  # a streamed message closed before its end: the text made durable


@dataclass(frozen=True)
class Delta:
    """New text of message ``offset`` since its last delta; ``done``: the message ends here;
    ``aborted``: it was closed before its producer ended it (the text so far is all there is)."""

    offset: int
    text: str
    done: bool
    aborted: bool = False


@dataclass(frozen=True)
class EncodedBatch:
    """A frame batch of an encode stream (``StreamDecoder.push`` takes ``data``), with the stream
    facts needed to decode it."""

    data: bytes
    model_id: str
    tier: Tier
    wire_bytes: int        # size of its gRPC message, the 5-byte gRPC prefix included


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    size_bytes: int
    is_default: bool


FLUSH = object()        # in ``encode_stream``'s chunks: emit buffered text now, in a short frame
END_MESSAGE = object()  # in ``encode_stream``'s chunks: the text so far completes a message
