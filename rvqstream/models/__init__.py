"""The rvqstream codec: tokenizer, RVQ frame encoder and code-conditioned decoder on ONNX Runtime,
arithmetic coding, blobs and stream frames; and the message codes (``CodeModel``, ``SemanticIndex``).
Needs no torch (training lives in the top-level ``models/``)."""

from rvqstream.models.batch import Batch
from rvqstream.models.code_model import CodeModel, shipped_code_model
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
from rvqstream.models.rvq_codes import Hit, SemanticIndex
from rvqstream.models.stream import Decoded, Frame, StreamDecoder, StreamEncoder

__all__ = ["Batch", "Cancel", "CancelledError", "CodeModel", "Codec", "CodecError", "Decoded", "Frame",
           "FrameKind", "Hit", "IntegrityError", "MalformedError", "SemanticIndex", "SessionSettings",
           "StreamDecoder", "StreamEncoder", "Tier", "TooLargeError", "TruncatedError", "UnknownModelError",
           "shipped_code_model"]
