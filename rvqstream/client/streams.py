"""``AsyncStreamWriter``: a producer's live stream of messages into a channel (PublishStream).

    async with client.open_stream("answers") as w:
        for token in llm():                 # text as it is generated
            await w.write(token)
        offset = await w.end_message()      # once the message's last batch is durable

Text is sent as it is written; the server codes it under the stream's latency budget and
acknowledges each batch once it is durable, with the bytes of the message's text now durable.
The writer keeps every byte not yet acknowledged and, after a lost connection or a server
restart, reconnects under the same producer id and message number and sends the text again from
the last durable byte, so the channel holds exactly what was written, once. ``buffer_bytes``
bounds the text held unacknowledged: ``write`` waits for acks beyond it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

import grpc

from rvqstream._proto import channel_pb2, frame_pb2
from rvqstream.client.calls import CHUNK_BYTES, Backoff, tier_pb
from rvqstream.client.errors import RvqstreamError
from rvqstream.models import Tier
from rvqstream.wire import CHANNEL_NAME, CHANNEL_NAME_RULE

if TYPE_CHECKING:
    from rvqstream.client.aio import AsyncClient

_STREAMING = channel_pb2.MESSAGE_STATE_STREAMING
_COMPLETE = channel_pb2.MESSAGE_STATE_COMPLETE


@dataclass
class _Outgoing:
    """One message of the stream: the text not yet durable (from byte ``base`` of the message),
    how much of it went out on the current call, and whether it has ended."""

    sequence: int
    done: asyncio.Future
    buf: bytearray = field(default_factory=bytearray)
    base: int = 0
    sent: int = 0
    ended: bool = False
    end_sent: bool = False
    offset: int | None = None


class AsyncStreamWriter:
    """Writes streamed messages to one channel (see the module docstring); use ``async with``."""

    def __init__(self, client: AsyncClient, channel: str, tier: Tier | str, max_delay_ms: int,
                 buffer_bytes: int = 1 << 20):
        if not CHANNEL_NAME.fullmatch(channel):
            raise RvqstreamError("INVALID_ARGUMENT", f"channel name {channel!r} is invalid: {CHANNEL_NAME_RULE}")
        self._client, self.channel = client, channel
        self._config = channel_pb2.PublishStreamConfig(
            channel=channel, tier=tier_pb(tier), max_delay_ms=max_delay_ms, producer_id=uuid.uuid4().hex)
        self.buffer_bytes = buffer_bytes
        self._messages: deque[_Outgoing] = deque()
        self._next_sequence = 0
        self._wake = asyncio.Event()        # something to send
        self._room = asyncio.Event()        # unacknowledged text fell under buffer_bytes
        self._room.set()
        self._flush = False
        self._closing = False
        self._error: RvqstreamError | None = None
        self._task: asyncio.Task | None = None
        self.header: frame_pb2.StreamHeader | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            await self.close()
        else:   # leave the open message to the server's stream timeout: it ends as aborted
            await self.stop()

    # -- the public calls -----------------------------------------------------------------------

    @property
    def offset(self) -> int | None:
        """The offset of the message being written, once its first text is durable (the message
        gets its offset when it starts); None before that and between messages."""
        return self._messages[-1].offset if self._messages and not self._messages[-1].ended else None

    async def write(self, text: str) -> None:
        """Appends ``text`` to the current message (starting one if none is open)."""
        if not isinstance(text, str):
            raise RvqstreamError("INVALID_ARGUMENT", f"text must be str, got {type(text).__name__}")
        self._check()
        msg = self._current()
        msg.buf += text.encode("utf-8")
        self._kick()
        while self._unacked() > self.buffer_bytes:
            self._room.clear()
            await self._room.wait()
            self._check()

    async def flush(self) -> None:
        """Asks the server to send what it holds of the message now, without waiting for company."""
        self._check()
        self._flush = True
        self._kick()

    async def end_message(self) -> int:
        """Ends the current message (an empty one if nothing was written since the last end);
        returns its offset once its last batch is durable."""
        self._check()
        msg = self._current()
        msg.ended = True
        self._kick()
        return await msg.done

    async def close(self) -> None:
        """Ends an open message that holds text, waits until everything written is durable, and
        closes the stream."""
        last = self._messages[-1] if self._messages else None
        if last is not None and not last.ended:
            if last.buf or last.base:
                await self.end_message()
            else:                     # opened by an empty write: nothing to send
                self._messages.pop()
                last.done.cancel()
        for msg in list(self._messages):
            await msg.done
        await self.stop()

    # -- internals ------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise RvqstreamError("FAILED_PRECONDITION", "the stream is closed")

    def _current(self) -> _Outgoing:
        if not self._messages or self._messages[-1].ended:
            done = asyncio.get_running_loop().create_future()
            done.add_done_callback(lambda f: f.cancelled() or f.exception())   # never "never retrieved"
            self._messages.append(_Outgoing(self._next_sequence, done))
            self._next_sequence += 1
        return self._messages[-1]

    def _unacked(self) -> int:
        return sum(len(m.buf) for m in self._messages)

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"rvqstream-stream-{self.channel}")

    async def stop(self) -> None:
        """Stops at once: text not yet durable is dropped, an open message is left to the server's
        stream timeout (it ends aborted unless this producer id continues it)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        stopped = RvqstreamError("FAILED_PRECONDITION", "the stream was stopped")
        for msg in self._messages:
            if not msg.done.done():
                msg.done.set_exception(stopped)
        self._room.set()

    def _fail(self, error: RvqstreamError) -> None:
        self._error = error
        for msg in self._messages:
            if not msg.done.done():
                msg.done.set_exception(error)
        self._room.set()

    async def _run(self) -> None:
        backoff = Backoff(self._client.reconnect_timeout_s)
        while True:
            call = self._client._channel_stub.PublishStream()
            sender: asyncio.Task | None = None
            try:
                first = self._messages[0].sequence if self._messages else self._next_sequence
                self._config.sequence = first
                await call.write(channel_pb2.PublishStreamRequest(config=self._config))
                header = await call.read()
                if header is grpc.aio.EOF or header.WhichOneof("kind") != "header":
                    raise RvqstreamError("INTERNAL", "PublishStream did not start with a header")
                self.header = header.header.stream
                self._resume(header.header.resume if header.header.HasField("resume") else None)
                if self._error is not None:
                    return
                sender = asyncio.create_task(self._send(call))
                while (resp := await call.read()) is not grpc.aio.EOF:
                    self._acknowledge(resp.ack)
                    if self._error is not None:
                        return
                    backoff.progress()
                await backoff.retry(None)       # the server ended the call: reconnect
            except grpc.RpcError as e:
                try:
                    await backoff.retry(e)
                except RvqstreamError as final:
                    self._fail(final)
                    return
            except RvqstreamError as e:
                self._fail(e)
                return
            except Exception as e:
                self._fail(RvqstreamError("INTERNAL", f"stream writer failed: {type(e).__name__}: {e}"))
                raise
            finally:
                if sender is not None:
                    sender.cancel()
                    await asyncio.gather(sender, return_exceptions=True)
                call.cancel()

    def _resume(self, resume: channel_pb2.StreamAck | None) -> None:
        """Applies the server's word on the first message of the call: continue it after its
        durable text, or drop it as complete (or aborted)."""
        for msg in self._messages:
            msg.sent, msg.end_sent = 0, False
        if resume is None:
            if self._messages and self._messages[0].base:
                raise RvqstreamError("DATA_LOSS", f"the server no longer holds message {self._messages[0].offset}")
            return
        self._acknowledge(resume)

    def _acknowledge(self, ack: channel_pb2.StreamAck) -> None:
        msg = next((m for m in self._messages if m.sequence == ack.sequence), None)
        if msg is None:
            return
        drop = ack.durable_bytes - msg.base
        if drop > len(msg.buf):
            self._fail(RvqstreamError("DATA_LOSS", f"the server acknowledged {ack.durable_bytes} bytes of a "
                                      f"message of {msg.base + len(msg.buf)}"))
            return
        del msg.buf[:drop]
        msg.base, msg.sent, msg.offset = ack.durable_bytes, max(0, msg.sent - drop), ack.offset
        if ack.state == _COMPLETE:
            self._messages.remove(msg)
            msg.done.set_result(ack.offset)
        elif ack.state != _STREAMING:     # aborted while this producer was away: it cannot go on
            self._fail(RvqstreamError(
                "ABORTED", f"message {ack.offset} of channel {self.channel!r} was closed as aborted before "
                "its end (the producer was away longer than the server's stream timeout); open a new stream"))
            return
        self._room.set()

    async def _send(self, call) -> None:
        """Writes what the messages hold and the call has not sent, in order."""
        while True:
            self._wake.clear()
            for msg in list(self._messages):
                while msg.sent < len(msg.buf):
                    piece = bytes(msg.buf[msg.sent:msg.sent + CHUNK_BYTES])
                    msg.sent += len(piece)
                    await call.write(channel_pb2.PublishStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=piece)))
                if msg.ended and not msg.end_sent:
                    msg.end_sent = True
                    await call.write(channel_pb2.PublishStreamRequest(chunk=frame_pb2.TextChunk(end_message=True)))
                if not msg.end_sent:
                    break
            if self._flush:
                self._flush = False
                await call.write(channel_pb2.PublishStreamRequest(chunk=frame_pb2.TextChunk(flush=True)))
            await self._wake.wait()
