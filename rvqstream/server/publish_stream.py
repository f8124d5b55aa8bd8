"""PublishStream: a producer's text coded as it arrives and appended, batch by batch, to streamed
messages of a channel; and the reaper that closes messages whose producer went away.

A streamed message is named by (producer_id, sequence). Its first batch creates it at the
channel's next offset; every batch is acknowledged once durable, with the UTF-8 bytes of text now
durable. A producer that reconnects names the message it was writing: the call continues it after
its durable text, in a fresh decoder context (the batch says so) with the message's running check
carried on, so the message's check still covers all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

import grpc
import numpy as np

from rvqstream._proto import channel_pb2
from rvqstream.models import Batch, Codec, CodecError
from rvqstream.server.channel_codes import CODE_TEXT, ChannelCodes
from rvqstream.server.disk import FreeSpace, full_error
from rvqstream.server.encode import EncodeSession, StreamLimits, check_delay, drain, written_tier
from rvqstream.server.errors import ServiceError, invalid, quoted
from rvqstream.server.logstore import (
    Code,
    LogFull,
    LogStore,
    LogUnavailable,
    MessageState,
    Part,
    PartConflict,
    StreamInfo,
    StreamKey,
)
from rvqstream.server.scheduler import Scheduler
from rvqstream.server.stream_codes import AbortCoder, code_text, stored_head
from rvqstream.server.telemetry import Metrics
from rvqstream.server.work_pool import WorkPool
from rvqstream.wire import MAX_SEQUENCE, PRODUCER_ID, PRODUCER_ID_RULE, tier_to_pb

log = logging.getLogger(__name__)


class OpenStreams:
    """Streamed messages no producer is writing: each is closed as aborted ``timeout_s`` after its
    producer left (or after the server started), unless a producer continues it first. A message
    has at most one writer here: the call that claimed it last; an earlier writer's leaving changes
    nothing. On a shared log (``LogStore.shared``) the writer may be in another replica: this one
    touches the messages its calls write every third of the timeout, watches every streaming
    message of the log (one whose replica died has nobody else to close it), and closes a message
    only once no replica wrote or touched it for the whole timeout."""

    def __init__(self, store: LogStore, timeout_s: float, coder: AbortCoder | None = None):
        """``coder``: makes an aborted message's code from its stored text (None: no codes)."""
        self.store, self.timeout_s, self.coder = store, timeout_s, coder
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._writers: dict[tuple[str, int], object] = {}
        self._tasks: set[asyncio.Task] = set()
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        for channel, offset in await self.store.open_streams():
            self._schedule((channel, offset))
        if self.store.shared:
            self._watcher = asyncio.create_task(self._watch_shared(), name="rvqstream-stream-watch")

    async def _watch_shared(self) -> None:
        """Every third of the timeout: touches every message a call here writes (all at once), and
        starts a timer for every streaming message of the log that has neither a writer nor a
        timer here. A round that fails is logged; the next one tries again."""
        while True:
            await asyncio.sleep(self.timeout_s / 3)
            try:
                await asyncio.gather(*(self._touch(*key) for key in list(self._writers)))
                for key in await self.store.open_streams():
                    if key not in self._writers and key not in self._timers:
                        self._schedule(key)
            except Exception as e:  # noqa: BLE001 - the watch goes on
                log.warning("watching the shared log's streaming messages failed: %s", e)

    async def _touch(self, channel: str, offset: int) -> None:
        try:
            await self.store.touch(channel, offset)
        except Exception as e:  # noqa: BLE001 - the next round tries again
            log.warning("could not touch message %d of %r: %s", offset, channel, e)

    def claim(self, channel: str, offset: int, writer: object) -> None:
        """``writer`` writes the message: no abort (on a shared log, the other replicas are told
        at once)."""
        timer = self._timers.pop((channel, offset), None)
        if timer is not None:
            timer.cancel()
        if self.store.shared and (channel, offset) not in self._writers:
            task = asyncio.get_running_loop().create_task(self._touch(channel, offset))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers[(channel, offset)] = writer

    def release(self, channel: str, offset: int, writer: object) -> None:
        """``writer`` left the message: abort it after the timeout, unless another writer has it."""
        if self._writers.get((channel, offset)) is writer:
            del self._writers[(channel, offset)]
            self._schedule((channel, offset))

    def orphaned(self, channel: str, offset: int) -> None:
        """A message whose writer went away before it could claim it: abort it after the timeout,
        unless a writer has it or its timer runs already."""
        key = (channel, offset)
        if key not in self._writers and key not in self._timers:
            self._schedule(key)

    def done(self, channel: str, offset: int) -> None:
        """The message ended."""
        self._writers.pop((channel, offset), None)

    def _schedule(self, key: tuple[str, int], delay_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.timeout_s if delay_s is None else delay_s, self._abort, *key)

    def _abort(self, channel: str, offset: int) -> None:
        self._timers.pop((channel, offset), None)
        task = asyncio.get_running_loop().create_task(self._close_aborted(channel, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_aborted(self, channel: str, offset: int) -> None:
        """Closes the message as aborted, with its code made from its stored text (on a shared
        log: unless another replica wrote or touched it within the timeout; then it waits again).
        A log that cannot be reached now is tried again after another timeout."""
        key = (channel, offset)
        try:
            if self.store.shared:        # what other replicas wrote and touched is folded here first
                await self.store.settled_end_offset(channel)
            idle = self.store.idle_s(channel, offset)
            if idle is not None and idle < self.timeout_s:
                if key not in self._writers and key not in self._timers:
                    self._schedule(key, self.timeout_s - idle)
                return
            coded = await self.coder.code(channel, offset) if self.coder is not None else None
            if await self.store.abort(channel, offset, coded[0] if coded else None) and coded:
                self.coder.aborted(channel, offset, coded)
        except LogUnavailable as e:
            log.warning("message %d of %r: its abort waits for the log (%s)", offset, channel, e)
            if key not in self._writers and key not in self._timers:
                self._schedule(key)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def check_producer(producer_id: str, allow_empty: bool = False) -> str:
    """``producer_id`` when it follows PRODUCER_ID_RULE (or is empty and ``allow_empty``)."""
    if not (allow_empty and not producer_id) and not PRODUCER_ID.fullmatch(producer_id):
        raise invalid(f"config.producer_id {quoted(producer_id)} is invalid: {PRODUCER_ID_RULE}",
                      "config.producer_id")
    return producer_id


def check_sequence(sequence: int, field: str) -> int:
    """``sequence`` when the log can store it (below 2^63)."""
    if sequence > MAX_SEQUENCE:
        raise ServiceError(grpc.StatusCode.OUT_OF_RANGE, f"{field} is {sequence}; at most {MAX_SEQUENCE}",
                           field)
    return sequence


def ack(info: StreamInfo, sequence: int) -> channel_pb2.StreamAck:
    return channel_pb2.StreamAck(offset=info.offset, sequence=sequence, durable_bytes=info.text_bytes,
                                 stored_bytes=info.stored_bytes, state=int(info.state))


class ProducerStream:
    """One PublishStream call: its encode session, the message it writes and its acks."""

    def __init__(self, store: LogStore, streams: OpenStreams, channel: str, config,
                 codec: Codec, scheduler: Scheduler, metrics: Metrics, limits: StreamLimits, space: FreeSpace,
                 codes: ChannelCodes | None, pool: WorkPool):
        check_delay(config.max_delay_ms, "config.max_delay_ms")
        self.tier = written_tier(config.tier, "config.tier")
        check_sequence(config.sequence, "config.sequence")
        self.store, self.streams, self.channel, self.codec = store, streams, channel, codec
        self.space, self.codes, self.pool, self.metrics = space, codes, pool, metrics
        self.head: list[str] = []                   # the current message's first CODE_TEXT characters
        self.head_chars = 0
        self.heads: deque[str] = deque()            # the text of messages read to their end, to code
        self.producer = check_producer(config.producer_id)
        self.sequence = config.sequence
        self.part = 0                       # next part number of the current message
        self.offset: int | None = None      # the current message, once it has one
        self.out: asyncio.Queue = asyncio.Queue(maxsize=limits.queue_frames)
        self.session = EncodeSession(codec, self.tier, None, config.max_delay_ms, scheduler, metrics,
                                     limits, self._emit, self._on_text)

    def _on_text(self, text: str, end: bool) -> None:
        """Keeps the head of each message's text: its code is made from it when the message ends."""
        if self.codes is None:
            return
        if self.head_chars < CODE_TEXT:
            self.head.append(text[:CODE_TEXT - self.head_chars])
            self.head_chars += len(self.head[-1])
        if end:
            self.heads.append("".join(self.head))
            self.head, self.head_chars = [], 0

    async def _code(self) -> tuple[Code, str, np.ndarray]:
        """The code of the message that ends now, the text it was made from, and its embedding."""
        return await code_text(self.codes, self.pool, self.channel, self.heads.popleft())

    async def _resume(self) -> channel_pb2.StreamAck | None:
        """Where the message (producer, sequence) stands, if the channel holds it; the call then
        continues it (streaming) or starts at the next sequence (complete or aborted)."""
        info = await self.store.find_stream(self.channel, self.producer, self.sequence)
        if info is None:
            return None
        if info.model_id != self.codec.model_id or info.tier != tier_to_pb(self.tier):
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"message {info.offset} was started with another model or tier: continue "
                               "it with the settings it was started with", "config.tier")
        resume = ack(info, self.sequence)
        if info.state == MessageState.STREAMING:
            self.streams.claim(self.channel, info.offset, self)
            self.offset, self.part = info.offset, info.parts
            if self.codes is not None:       # its code is made from its whole head, stored text first
                try:
                    self._on_text(await stored_head(self.store, self.pool, self.codec, self.tier, self.channel,
                                                    info.offset), False)
                except (CodecError, ServiceError) as e:     # coded from this call's text only
                    log.warning("message %d of %r: its stored text did not decode for its code: %s",
                                info.offset, self.channel, e)
            self.session.encoder.resume_message(info.crc)
            self.session.message_bytes = info.text_bytes
        else:
            self.sequence += 1
        return resume

    async def responses(self, requests: AsyncIterator) -> AsyncIterator[channel_pb2.PublishStreamResponse]:
        try:
            resume = await self._resume()
            yield channel_pb2.PublishStreamResponse(header=channel_pb2.PublishStreamHeader(
                stream=self.session.header(), resume=resume))
            async for item in drain(self.session.run(requests), self.out):
                yield item
        finally:
            if self.offset is not None:      # left inside a message: abort it unless continued
                self.streams.release(self.channel, self.offset, self)

    async def _emit(self, batch: Batch) -> None:
        check_sequence(self.sequence, "the next message's sequence")
        self.space.check()
        key = StreamKey(self.producer, self.sequence, self.codec.model_id, tier_to_pb(self.tier))
        code, text, emb = (await self._code() if batch.message_end and self.codes is not None
                           else (None, "", None))
        part = Part(self.part, batch.data, batch.text_bytes, batch.crc, batch.message_end, code)
        append = asyncio.ensure_future(self.store.append_part(self.channel, key, part))
        try:
            info = await asyncio.shield(append)   # the write goes on if this call is cancelled ...
        except asyncio.CancelledError:
            append.add_done_callback(self._left_during_append)
            raise
        except LogFull as e:
            raise full_error(str(e)) from None
        except PartConflict as e:
            raise ServiceError(grpc.StatusCode.ABORTED, f"message ({self.producer}, {self.sequence}): {e}") from None
        if self.offset is None:
            self.streams.claim(self.channel, info.offset, self)
        self.offset, self.part = info.offset, self.part + 1
        response = channel_pb2.PublishStreamResponse(ack=ack(info, self.sequence))
        if code is not None:
            self.codes.stored(self.channel, [info.offset], [code], [text], emb)
            if code.near_of is not None:
                self.metrics.near_duplicates.add(1)
                response.ack.near_duplicate, response.ack.near_duplicate_of = True, code.near_of
        if batch.message_end:
            self.streams.done(self.channel, info.offset)
            self.offset, self.part = None, 0
            self.sequence += 1
        await self.out.put(response)

    def _left_during_append(self, append: asyncio.Future) -> None:
        """... and when it made a message that is still open, its abort timer starts: the call
        that wrote it is gone."""
        if append.cancelled() or append.exception() is not None:
            return
        info = append.result()
        if info.state == MessageState.STREAMING:
            self.streams.orphaned(self.channel, info.offset)

