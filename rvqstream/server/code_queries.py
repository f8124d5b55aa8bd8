"""Search and SyncCodes: what a client asks of a channel's message codes.

Search scores the channel's codes against a query (a text the work pool embeds, or a code) by
asymmetric distance, on the work pool (a scan of 10^6 codes takes tens of milliseconds: never on
the event loop), and returns the best ``k``. SyncCodes pages the stored codes out in runs of
consecutive offsets: ``stages`` bytes a message and a few bytes a page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from rvqstream._proto import channel_pb2
from rvqstream.models.errors import Cancel
from rvqstream.models.rvq_codes import Hit, SemanticIndex
from rvqstream.server.channel_codes import ChannelCodes
from rvqstream.server.errors import invalid
from rvqstream.server.logstore import LogStore, MessageState
from rvqstream.server.telemetry import Metrics
from rvqstream.server.work_pool import WorkPool

MAX_K = 1000               # results of one search at most
DEFAULT_K = 10
SYNC_PAGE = 4096           # codes in one SyncCodes response at most
SYNC_READ = 8192           # log rows read at once


class CodeQueries:
    """The Search and SyncCodes handlers' work, for a channel already checked to exist."""

    def __init__(self, store: LogStore, codes: ChannelCodes, pool: WorkPool, metrics: Metrics,
                 max_text_bytes: int):
        self.store, self.codes, self.pool, self.metrics = store, codes, pool, metrics
        self.max_text_bytes = max_text_bytes

    def _stages(self, stages: int) -> int:
        full = self.codes.model.stages
        if stages > full:
            raise invalid(f"stages is {stages}; the code model has {full}", "stages")
        return stages or full

    async def _query(self, request: channel_pb2.SearchRequest, context) -> np.ndarray:
        kind = request.WhichOneof("query")
        if kind == "text":
            size = len(request.text.encode("utf-8"))
            if size > self.max_text_bytes:
                raise invalid(f"text is {size} bytes; at most {self.max_text_bytes}", "text")
            return await self.pool.run(_embed_one, self.codes, request.text, context=context, wait=True)
        if kind == "code":
            code = request.code
            if not 1 <= len(code) <= self.codes.model.stages:
                raise invalid(f"code is {len(code)} bytes; a code has 1 to {self.codes.model.stages}", "code")
            return self.codes.model.code_vector(code)
        raise invalid("a search needs a query: text or code", "query")

    async def search(self, channel: str, request: channel_pb2.SearchRequest, context) -> channel_pb2.SearchResponse:
        """The ``k`` best messages of ``channel`` for the request's query."""
        if request.k > MAX_K:
            raise invalid(f"k is {request.k}; at most {MAX_K}", "k")
        stages = self._stages(request.stages)
        query = await self._query(request, context)
        index = await self.codes.index(channel)
        hits = await self.pool.run(_search, index, query, request.k or DEFAULT_K, stages, context=context,
                                   wait=True)
        self.metrics.searches.record(len(index))
        return channel_pb2.SearchResponse(
            hits=[channel_pb2.SearchHit(offset=h.offset, score=h.score) for h in hits],
            code_model_id=self.codes.model.model_id, stages=stages, searched=len(index))

    async def sync(self, channel: str, from_offset: int, stages: int) -> AsyncIterator[channel_pb2.SyncCodesResponse]:
        """Pages of ``channel``'s codes from ``from_offset`` (cut to ``stages`` bytes), up to the
        first message still streaming or the end; the last page says where a later sync goes on.
        Codes of another code model than the server's count as none."""
        stages = self._stages(stages)
        model_id = self.codes.model.model_id
        offset = max(from_offset, await self.store.first_offset(channel))
        first, codes, sent = offset, [], False
        while True:
            entries = await self.store.read_codes(channel, offset, SYNC_READ)
            stop = len(entries) < SYNC_READ
            for e in entries:
                has = e.code is not None and e.code.model_id == model_id
                if not has and e.state == MessageState.STREAMING:
                    stop = True          # its code comes when it ends: a later sync starts here
                    break
                if not has or len(codes) == SYNC_PAGE:
                    if codes:
                        yield self._page(model_id if not sent else "", stages, first, codes)
                        sent = True
                    first, codes = e.offset + (not has), []
                if has:
                    codes.append(e.code.code[:stages])
                offset = e.offset + 1
            if stop:
                break
        last = self._page(model_id if not sent else "", stages, first, codes)
        last.next_offset = offset
        yield last

    @staticmethod
    def _page(model_id: str, stages: int, first: int, codes: list[bytes]) -> channel_pb2.SyncCodesResponse:
        return channel_pb2.SyncCodesResponse(code_model_id=model_id, stages=stages, first_offset=first,
                                             codes=b"".join(codes))


def _search(index: SemanticIndex, query: np.ndarray, k: int, stages: int, cancel: Cancel) -> list[Hit]:
    cancel.check()
    return index.search(query, k, stages)


def _embed_one(codes: ChannelCodes, text: str, cancel: Cancel) -> np.ndarray:
    cancel.check()
    return codes.model.embed([text])[0]
