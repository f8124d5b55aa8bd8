"""One subscription of a channel: replay from an offset, then follow live.

Messages are announced in offset order (``ChannelMessage``): a published message with its blob,
a streamed one with the frame batches it holds so far. Batches appended later to a streamed
message follow one per response (``frames``, with the message named by its offset's difference
from the previous response's, usually 0 and so free on the wire), as soon as they are durable,
several streamed messages interleaved when producers write at once. An abort is announced again
with its new state. Each step reads at most a page of entries and ``page_bytes`` of batches, and
awaiting each send lets HTTP/2 flow control hold a slow subscriber.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from rvqstream._proto import channel_pb2
from rvqstream.server.logstore import Entry, LogStore, MessageState


class Subscription:
    """Server side of one Subscribe call."""

    def __init__(self, store: LogStore, channel: str, from_offset: int, from_part: int,
                 page: int, page_bytes: int):
        self.store, self.channel, self.page, self.page_bytes = store, channel, page, page_bytes
        self.next_offset = from_offset
        self.from_part = from_part          # for the message at from_offset only
        self.open: dict[int, int] = {}      # streamed messages followed: offset -> next part to send
        self._model: str | None = None
        self._about: int | None = None      # offset the previous response was about

    async def responses(self) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        while True:
            version = self.store.version(self.channel)
            sent = False
            for entry in await self.store.read(self.channel, self.next_offset, self.page):
                yield await self._announce(entry)
                self.next_offset = entry.offset + 1
                sent = True
            for offset in list(self.open):
                async for response in self._follow(offset):
                    yield response
                    sent = True
            if not sent:
                await self.store.wait_change(self.channel, version)

    async def _announce(self, e: Entry) -> channel_pb2.SubscribeResponse:
        model = "" if e.model_id == self._model else e.model_id
        self._model, self._about = e.model_id, e.offset
        msg = channel_pb2.ChannelMessage(offset=e.offset, model_id=model, blob=e.blob, state=int(e.state))
        if e.streamed:
            first = self.from_part if e.offset == self.next_offset and self.from_part else 0
            self.from_part = 0
            batches, state = await self.store.read_parts(self.channel, e.offset, first, self.page_bytes)
            msg.streamed, msg.tier, msg.first_part = True, e.tier, first
            msg.frame_batches.extend(batches)
            msg.state = int(state)
            if state == MessageState.STREAMING:
                self.open[e.offset] = first + len(batches)
        return channel_pb2.SubscribeResponse(message=msg)

    async def _follow(self, offset: int) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        """New batches of an open streamed message; its abort once no batch is left."""
        batches, state = await self.store.read_parts(self.channel, offset, self.open[offset], self.page_bytes)
        for batch in batches:
            delta = offset - self._about
            self._about = offset
            self.open[offset] += 1
            yield channel_pb2.SubscribeResponse(frames=batch, offset_delta=delta)
        if state != MessageState.STREAMING:
            parts = self.open.pop(offset)
            if state == MessageState.ABORTED:
                self._about = offset
                yield channel_pb2.SubscribeResponse(message=channel_pb2.ChannelMessage(
                    offset=offset, streamed=True, state=int(state), first_part=parts))
