"""Message codes on the device: syncing a channel's codes into a ``SemanticIndex``, and asking the
server to search.

A synced index holds ``stages`` bytes a message (16 at full stages) and is searched here, with
its code model embedding the query (``client.code_model(index.model_id)``: the one shipped in the
package, or fetched with GetModel and cached); the text of the messages found is fetched on
demand (``fetch``/``subscribe``). A sync goes on from ``index.next_offset``: the end of
the channel, or the first message that was still streaming (its code is made when it ends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from rvqstream._proto import channel_pb2
from rvqstream.client.calls import Backoff
from rvqstream.client.errors import RvqstreamError
from rvqstream.models.code_model import CodeModel
from rvqstream.models.rvq_codes import Hit, SemanticIndex


async def sync_codes(stub, channel: str, from_offset: int, index: SemanticIndex | None,
                     code_model: Callable[[str], Awaitable[CodeModel]], timeout_s: float) -> SemanticIndex:
    """Adds ``channel``'s codes from ``from_offset`` on to ``index`` (None: a new index of the
    code model the server names, which ``code_model(model_id)`` provides); resumes after a
    disconnect from the last page received."""
    offset = from_offset
    backoff = Backoff(timeout_s)
    while True:
        request = channel_pb2.SyncCodesRequest(channel=channel, from_offset=offset,
                                               stages=index.stages if index is not None else 0)
        try:
            async for page in stub.SyncCodes(request):
                if page.code_model_id:
                    if index is None:
                        index = (await code_model(page.code_model_id)).index(page.stages)
                    elif page.code_model_id != index.model_id:
                        raise RvqstreamError(
                            "FAILED_PRECONDITION", f"channel {channel!r} is coded by code model "
                            f"{page.code_model_id[:12]}, this index holds codes of {index.model_id[:12]}: "
                            "sync into a new index")
                if index is None or page.stages != index.stages or len(page.codes) % index.stages:
                    raise RvqstreamError("DATA_LOSS", f"a page of {len(page.codes)} bytes of {page.stages}-stage "
                                                      "codes does not fit the index")
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
