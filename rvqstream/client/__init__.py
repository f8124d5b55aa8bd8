"""The rvqstream edge SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Needs no server packages and no torch; messages are decoded locally with ONNX Runtime. Every
failure is an ``RvqstreamError``; results are plain types (``Message``, ``Delta``,
``EncodedBatch``, ``ModelInfo``), never generated protobuf classes.
"""

from rvqstream.client.aio import AsyncClient
from rvqstream.client.cache import ModelCache
from rvqstream.client.credentials import TLSConfig
from rvqstream.client.errors import RvqstreamError
from rvqstream.client.streams import AsyncStreamWriter
from rvqstream.client.sync import Client, StreamWriter
from rvqstream.client.types import END_MESSAGE, FLUSH, Delta, EncodedBatch, Message, ModelInfo

__all__ = ["END_MESSAGE", "FLUSH", "AsyncClient", "AsyncStreamWriter", "Client", "Delta", "EncodedBatch",
           "Message", "ModelCache", "ModelInfo", "RvqstreamError", "StreamWriter",
           "TLSConfig"]
