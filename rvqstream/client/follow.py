"""Following a channel: replay, then live, decoded here, resumed on its own after a disconnect.

``Follower`` turns one channel's Subscribe responses into events: each published message once,
whole; each streamed message as the text of each frame batch, decoded locally as it arrives, then
its end (or abort). It tracks the position itself: the lowest offset not yet finished and, for
every streamed message in progress, the batches already decoded (with the decoder's state), so
that after a reconnect it asks for the rest from that offset and batch on and skips whatever the
server sends again: no text is repeated, none is missing. A batch that fails its check is not
shown: the message's text is then fetched in fallback form once the message is closed, and what
was not yet shown follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from rvqstream._proto import channel_pb2
from rvqstream.client.calls import GRPC_PREFIX_BYTES, REFETCH_ERRORS, Backoff, decode_fallback
from rvqstream.models import StreamDecoder, Tier
from rvqstream.wire import tier_from_pb

if TYPE_CHECKING:
    from rvqstream.client.aio import AsyncClient

_ABORTED = channel_pb2.MESSAGE_STATE_ABORTED
_STREAMING = channel_pb2.MESSAGE_STATE_STREAMING
BROKEN_POLL_S = 0.2
CATCH_UP_BATCH = 64      # whole messages already received that decode together (decompress_many)


def _whole(resp: channel_pb2.SubscribeResponse) -> bool:
    """Whether a response carries a whole (published, not streamed) message."""
    if not resp.HasField("message"):
        return False
    m = resp.message
    return not (m.streamed or m.state == _STREAMING)


@dataclass
class Event:
    """New text of message ``offset``; ``done``: the message ends here (``aborted``: before its
    producer ended it). ``compressed_bytes``/``wire_bytes``: what carried this text (coded
    bytes; gRPC messages with framing); ``fallback``: refetched after a failed check."""

    offset: int
    text: str
    done: bool
    aborted: bool
    model_id: str
    compressed_bytes: int
    wire_bytes: int
    fallback: bool = False


class _Resync(Exception):
    """The subscription lost track of where the server's responses point: subscribe again."""


@dataclass
class _Streamed:
    """A streamed message in progress here: its model and tier, its decoder (once the model is
    here), the batches decoded (``parts``), the number of the next batch the server sends on this
    call, and the characters shown."""

    model_id: str
    tier: Tier
    decoder: StreamDecoder | None = None
    parts: int = 0
    next_part: int = 0
    shown: int = 0


class Follower:
    """One follow of ``channel`` from ``from_offset``; ``events()`` is the stream of ``Event``."""

    def __init__(self, client: AsyncClient, channel: str, from_offset: int):
        self.client, self.channel = client, channel
        self.next_offset = from_offset          # lowest offset not finished here
        self.removed_below = from_offset        # offsets below this were removed by retention
        self._finished_above: set[int] = set()  # finished offsets past next_offset
        self._open: dict[int, _Streamed] = {}
        self._model, self._tier = "", 0        # of the last message announced
        self._about: int | None = None         # offset the previous response was about ...
        self._ended = False                    # ... and whether that response ended it

    async def events(self) -> AsyncIterator[Event]:
        backoff = Backoff(self.client.reconnect_timeout_s)
        while True:
            head = self._open.get(self.next_offset)
            call = self.client._channel_stub.Subscribe(channel_pb2.SubscribeRequest(
                channel=self.channel, from_offset=self.next_offset, from_part=head.parts if head else 0))
            for s in self._open.values():
                s.next_part = 0
            if head is not None:
                head.next_part = head.parts
            # a call starts with an announcement that sets these again, as the server's side does
            self._model, self._tier, self._about, self._ended = "", 0, None, False
            try:
                async for resp, wire, decoded in self._with_catch_up(call):
                    if resp.HasField("message"):
                        async for event in self._message(resp.message, wire, decoded):
                            yield event
                    else:
                        offset = (self._about + 1 if self._ended else self._about) + resp.offset_delta
                        self._about = offset
                        if offset not in self._open and not self._finished(offset):
                            self._start(offset, self._model, self._tier)   # announced by its first batch
                        async for event in self._batches(offset, [resp.frames], wire):
                            yield event
                    backoff.progress()
                await backoff.retry(None)   # the server ends a subscription only when it shuts down
            except grpc.RpcError as e:
                await backoff.retry(e)
            except _Resync:
                pass
            finally:
                call.cancel()

    async def _with_catch_up(self, call) -> AsyncIterator[tuple]:
        """The call's responses with their wire size, and for a whole message its text decoded
        ahead (or None): the whole messages already received when one is due (a backlog
        replaying) decode together, up to ``CATCH_UP_BATCH`` at once (``Codec.decompress_many``)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * CATCH_UP_BATCH)

        async def pump() -> None:
            try:
                async for resp in call:
                    await queue.put(resp)
                await queue.put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
                await queue.put(e)

        task = asyncio.create_task(pump())
        try:
            while True:
                resp = await queue.get()
                if resp is None:
                    return
                if isinstance(resp, BaseException):
                    raise resp
                group = [resp]
                while _whole(resp) and not queue.empty() and len(group) < CATCH_UP_BATCH:
                    nxt = queue.get_nowait()
                    group.append(nxt)
                    if not isinstance(nxt, channel_pb2.SubscribeResponse) or not _whole(nxt):
                        break
                whole = [r for r in group if isinstance(r, channel_pb2.SubscribeResponse) and _whole(r)]
                decoded = await self._decode_ahead(whole) if len(whole) > 1 else {}
                for r in group:
                    if r is None:
                        return
                    if isinstance(r, BaseException):
                        raise r
                    yield r, r.ByteSize() + GRPC_PREFIX_BYTES, decoded.get(id(r))
        finally:
            task.cancel()

    async def _decode_ahead(self, whole: list) -> dict[int, str | None]:
        """Texts of whole-message responses by ``id``: decoded together per model; None where a
        blob did not decode (``_message`` then decodes it alone, refetching if need be)."""
        model, by_model = self._model, {}
        for r in whole:
            model = r.message.model_id or model
            by_model.setdefault(model, []).append(r)
        out: dict[int, str | None] = {}
        for model_id, rs in by_model.items():
            if not model_id:
                continue
            codec = await self.client.model(model_id)
            texts = await asyncio.to_thread(codec.decompress_many, [r.message.blob for r in rs])
            out.update({id(r): t if isinstance(t, str) else None for r, t in zip(rs, texts)})
        return out

    def _finished(self, offset: int) -> bool:
        return offset < self.next_offset or offset in self._finished_above

    def _finish(self, offset: int) -> None:
        self._open.pop(offset, None)
        self._finished_above.add(offset)
        while self.next_offset in self._finished_above:
            self._finished_above.discard(self.next_offset)
            self.next_offset += 1

    def _start(self, offset: int, model_id: str, tier: int) -> _Streamed:
        s = self._open[offset] = _Streamed(model_id, tier_from_pb(tier))
        return s

    async def _message(self, m: channel_pb2.ChannelMessage, wire: int,
                       decoded: str | None = None) -> AsyncIterator[Event]:
        """Events of one message response; ``decoded``: a whole message's text decoded ahead."""
        streamed = m.streamed or m.state == _STREAMING
        self._about, self._ended = m.offset, m.state != _STREAMING
        self._model = m.model_id or self._model
        if streamed:
            self._tier = m.tier
        if self._finished(m.offset):
            return
        if m.offset > self.next_offset and not self._open:
            self.next_offset = self.removed_below = m.offset   # retention removed the offsets below
            self._finished_above = {o for o in self._finished_above if o > m.offset}
        if not streamed:
            if decoded is not None:
                text, wire_bytes, fallback = decoded, wire, False
            else:
                msg = await self.client._decode(self.channel, m.offset, self._model, m.blob, wire)
                text, wire_bytes, fallback = msg.text, msg.wire_bytes, msg.fallback
            self._finish(m.offset)
            yield Event(m.offset, text, True, False, self._model, len(m.blob), wire_bytes, fallback)
            return
        s = self._open.get(m.offset) or self._start(m.offset, self._model, m.tier)
        s.next_part = m.first_part
        async for event in self._batches(m.offset, list(m.frame_batches), wire):
            yield event
        self._ended = m.state != _STREAMING
        if m.state == _ABORTED and m.offset in self._open and s.next_part >= s.parts:
            async for event in self._close(m.offset, s, aborted=True):
                yield event

    async def _batches(self, offset: int, batches: list[bytes], wire: int) -> AsyncIterator[Event]:
        s = self._open.get(offset)
        if s is None:
            return
        if s.decoder is None:
            s.decoder = (await self.client.model(s.model_id)).decoder(s.tier)
        for batch in batches:
            index, s.next_part = s.next_part, s.next_part + 1
            if index < s.parts:          # decoded before a reconnect (so it did not end the message)
                self._ended = False
                continue
            s.parts += 1
            try:
                decoded = await asyncio.to_thread(s.decoder.push, batch)
            except REFETCH_ERRORS:
                async for event in self._refetch(offset, s):
                    yield event
                raise _Resync from None   # where this batch ended is unknown here: start over
            s.shown += len(decoded.text)
            if decoded.message_end:
                self._finish(offset)
            if offset == self._about:
                self._ended = decoded.message_end
            yield Event(offset, decoded.text, decoded.message_end, False, s.model_id, len(batch), wire)
            wire = 0

    async def _close(self, offset: int, s: _Streamed, aborted: bool) -> AsyncIterator[Event]:
        self._finish(offset)
        yield Event(offset, "", True, aborted, s.model_id, 0, 0)

    async def _refetch(self, offset: int, s: _Streamed) -> AsyncIterator[Event]:
        """After a failed check: the message in fallback form once it is closed; what was not
        shown yet follows, then its end."""
        while True:
            resp = await self.client._unary(self.client._channel_stub.FetchMessage,
                                            channel_pb2.FetchMessageRequest(channel=self.channel, offset=offset))
            if resp.state != _STREAMING:
                break
            await asyncio.sleep(BROKEN_POLL_S)
        codec = await self.client.model(resp.model_id)
        text = await decode_fallback(codec, resp.fallback_blob, f"message {offset} of {self.channel!r}")
        self._finish(offset)
        yield Event(offset, text[s.shown:], True, resp.state == _ABORTED, s.model_id,
                    len(resp.fallback_blob), resp.ByteSize() + GRPC_PREFIX_BYTES, True)
