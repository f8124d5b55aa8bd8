"""The rvqstream edge SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Needs no server packages and no torch; messages are decoded locally with ONNX Runtime. Every
failure is an ``RvqstreamError``; results are plain types (``Message``, ``EncodedFrame``,
``ModelInfo``, the codec's ``Frame``), never generated protobuf classes.
"""

from rvqstream.client.aio import AsyncClient
from rvqstream.client.cache import ModelCache
from rvqstream.client.errors import RvqstreamError
from rvqstream.client.sync import Client
from rvqstream.client.types import END_MESSAGE, FLUSH, EncodedFrame, Message, ModelInfo

__all__ = ["END_MESSAGE", "FLUSH", "AsyncClient", "Client", "EncodedFrame", "Message", "ModelCache",
           "ModelInfo", "RvqstreamError"]
