"""One subscription of a channel: replay from an offset, then follow live.

Messages are announced in offset order (``ChannelMessage``): a published message with its blob,
a streamed one with the frame batches it holds so far. Batches appended later to a streamed
message follow one per response (``frames``, with the message named by its offset's difference
from the previous response's, usually 0 and so free on the wire), as soon as they are durable,
several streamed messages interleaved when producers write at once. An abort is announced again
with its new state. Each step reads at most a page of entries and ``page_bytes`` of blobs or
batches (one entry or batch at least), and awaiting each send lets HTTP/2 flow control hold a slow
subscriber. A subscription from an offset retention removed starts at the first one kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from rvqstream._proto import channel_pb2, frame_pb2
from rvqstream.server.logstore import Entry, LogStore, MessageState


class Subscription:
    """Server side of one Subscribe call."""

    def __init__(self, store: LogStore, channel: str, from_offset: int, from_part: int,
                 page: int, page_bytes: int):
        self.store, self.channel, self.page, self.page_bytes = store, channel, page, page_bytes
        self.next_offset = from_offset
        self.from_offset, self.from_part = from_offset, from_part   # from_part: for from_offset only
        self.open: dict[int, int] = {}      # streamed messages followed: offset -> next part to send
        self._tiers: dict[int, int] = {}    # their tiers
        self._model: str | None = None      # model and tier of the last message announced
        self._tier = frame_pb2.TIER_EXACT
        self._about: int | None = None      # offset the previous response was about ...
        self._ended = False                 # ... and whether that response ended it

    async def responses(self) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        while True:
            version = self.store.version(self.channel)
            sent = False
            for entry in await self.store.read(self.channel, self.next_offset, self.page, self.page_bytes):
                async for response in self._announce(entry):
                    yield response
                self.next_offset = entry.offset + 1
                sent = True
            for offset in list(self.open):
                async for response in self._follow(offset):
                    yield response
                    sent = True
            if not sent:
                await self.store.wait_change(self.channel, version)

    def _base(self) -> int:
        """The offset a ``frames`` response with offset_delta 0 is about: the message of the
        previous response, or the one after it when that response ended it."""
        return self._about + 1 if self._ended else self._about

    async def _announce(self, e: Entry) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        if e.streamed:
            first = self.from_part if e.offset == self.from_offset else 0
            batches, state = await self.store.read_parts(self.channel, e.offset, first, self.page_bytes)
            if (e.state == MessageState.STREAMING and first == 0 and batches and self._about is not None
                    and self._ended and e.offset == self._about + 1
                    and (e.model_id, e.tier) == (self._model, self._tier)):
                # a live message after one that ended, like it: its first batch announces it (never
                # a closed one: a subscriber that resumed may have finished it, and could not tell
                # which of its batches ends it)
                self.open[e.offset], self._tiers[e.offset] = 0, e.tier
                async for response in self._send(e.offset, batches, state):
                    yield response
                if state == MessageState.COMPLETE:
                    self._close(e.offset)
                return
        model = "" if e.model_id == self._model else e.model_id
        self._model, self._about, self._ended = e.model_id, e.offset, True
        msg = channel_pb2.ChannelMessage(offset=e.offset, model_id=model, blob=e.blob, state=int(e.state))
        if e.streamed:
            self._tier = e.tier
            # implied while it streams; the exact tier is the default: neither costs a byte then
            msg.streamed = state != MessageState.STREAMING
            msg.tier = 0 if e.tier == frame_pb2.TIER_EXACT else e.tier
            msg.first_part = first
            msg.frame_batches.extend(batches)
            msg.state = int(state)
            self._ended = state != MessageState.STREAMING
            if state == MessageState.STREAMING:
                self.open[e.offset], self._tiers[e.offset] = first + len(batches), e.tier
        yield channel_pb2.SubscribeResponse(message=msg)

    async def _send(self, offset: int, batches: list[bytes],
                    state: MessageState) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        for i, batch in enumerate(batches):
            delta = offset - self._base()
            self._about = offset
            self._ended = state == MessageState.COMPLETE and i == len(batches) - 1
            self.open[offset] += 1
            yield channel_pb2.SubscribeResponse(frames=batch, offset_delta=delta)

    async def _follow(self, offset: int) -> AsyncIterator[channel_pb2.SubscribeResponse]:
        """New batches of an open streamed message; its abort once no batch is left."""
        batches, state = await self.store.read_parts(self.channel, offset, self.open[offset], self.page_bytes)
        async for response in self._send(offset, batches, state):
            yield response
        if state != MessageState.STREAMING:
            parts, tier = self.open[offset], self._tiers[offset]
            self._close(offset)
            if state == MessageState.ABORTED:     # announced again, with its tier as any announcement
                self._about, self._ended, self._tier = offset, True, tier
                yield channel_pb2.SubscribeResponse(message=channel_pb2.ChannelMessage(
                    offset=offset, streamed=True, state=int(state), first_part=parts,
                    tier=0 if tier == frame_pb2.TIER_EXACT else tier))

    def _close(self, offset: int) -> None:
        del self.open[offset], self._tiers[offset]
