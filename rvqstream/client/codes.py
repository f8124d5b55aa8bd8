"""Message codes on the device: syncing a channel's codes into a ``SemanticIndex``, and asking the
server to search.

A synced index holds ``stages`` bytes a message (16 at full stages) and is searched here, with
the shipped code model embedding the query (``shipped_code_model().query(text)``); the text of
the messages found is fetched on demand (``fetch``/``subscribe``). A sync goes on from ``index.next_offset``: the end of
the channel, or the first message that was still streaming (its code is made when it ends).
"""

from __future__ import annotations

import grpc
import numpy as np

from rvqstream._proto import channel_pb2
from rvqstream.client.calls import Backoff
from rvqstream.client.errors import RvqstreamError
from rvqstream.models.code_model import shipped_code_model
from rvqstream.models.rvq_codes import Hit, SemanticIndex


async def sync_codes(stub, channel: str, from_offset: int, index: SemanticIndex | None,
                     timeout_s: float) -> SemanticIndex:
    """Adds ``channel``'s codes from ``from_offset`` on to ``index`` (a new one of the shipped code
    model when None); resumes after a disconnect from the last page received."""
    model = shipped_code_model()
    if index is None:
        index = model.index()
    offset = from_offset
    backoff = Backoff(timeout_s)
    while True:
        request = channel_pb2.SyncCodesRequest(channel=channel, from_offset=offset, stages=index.stages)
        try:
            async for page in stub.SyncCodes(request):
                if page.code_model_id and page.code_model_id != model.model_id:
                    raise RvqstreamError("FAILED_PRECONDITION",
                                         f"channel {channel!r} is coded by code model {page.code_model_id[:12]}, "
                                         f"this SDK ships {model.model_id[:12]}: update one of them")
                if len(page.codes) % index.stages:
                    raise RvqstreamError("DATA_LOSS", f"a page of {len(page.codes)} bytes is not whole codes "
                                                      f"of {index.stages} bytes")
                n = len(page.codes) // index.stages
                if n:
                    index.add(np.arange(page.first_offset, page.first_offset + n),
                              np.frombuffer(page.codes, np.uint8).reshape(n, index.stages))
                offset = page.first_offset + n
                if page.next_offset:
                    offset = index.next_offset = page.next_offset
                backoff.progress()
            return index
        except grpc.RpcError as e:
            await backoff.retry(e)


async def search(stub, channel: str, query: str | bytes, k: int, stages: int, timeout_s: float) -> list[Hit]:
    """The server's search of ``channel`` for a text or a code, best first."""
    request = channel_pb2.SearchRequest(channel=channel, k=k, stages=stages)
    if isinstance(query, str):
        request.text = query
    elif isinstance(query, bytes):
        request.code = query
    else:
        raise RvqstreamError("INVALID_ARGUMENT", f"query must be str or bytes, got {type(query).__name__}")
    backoff = Backoff(timeout_s)
    while True:
        try:
            resp = await stub.Search(request)
            return [Hit(h.offset, h.score) for h in resp.hits]
        except grpc.RpcError as e:
            await backoff.retry(e)
