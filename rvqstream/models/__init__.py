"""The rvqstream codec: tokenizer, RVQ frame encoder and code-conditioned decoder on ONNX Runtime,
arithmetic coding, blobs and stream frames. Needs no torch (training lives in ``training/``)."""

from rvqstream.models.batch import Batch
from rvqstream.models.codec import Codec
from rvqstream.models.errors import (
    Cancel,
    CancelledError,
    CodecError,
    IntegrityError,
    MalformedError,
    TooLargeError,
    TruncatedError,
    UnknownModelError,
)
from rvqstream.models.frames import FrameKind, Tier
from rvqstream.models.runtime import SessionSettings
from rvqstream.models.stream import Decoded, Frame, StreamDecoder, StreamEncoder

__all__ = ["Batch", "Cancel", "CancelledError", "Codec", "CodecError", "Decoded", "Frame", "FrameKind",
           "IntegrityError", "MalformedError", "SessionSettings", "StreamDecoder", "StreamEncoder", "Tier",
           "TooLargeError", "TruncatedError", "UnknownModelError"]
