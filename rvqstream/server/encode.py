"""One text stream's state: UTF-8 reassembly, pending text, the latency-budget timer, the emit sink.

Used by EncodeStream (batches go back to the caller) and PublishStream (batches go to the channel
log). Two coroutines per stream: ``_read`` turns chunks into pending operations (and stops
reading while ``buffer_bytes`` of text wait, so HTTP/2 flow control pushes back on the
producer); ``_work`` hands them to the scheduler, which codes full frames as text arrives and
holds them, and flushes by Nagle's rule: the first text of an idle stream (no batch within the
budget) goes out at once, later text waits for company until its oldest byte is about to exceed
the budget; a flush marker or a message end flushes at once. Each flush is one frame batch,
handed to ``emit`` (a slow sink stops ``_work``, which stops ``_read``).
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc

from rvqstream._proto import codec_pb2, frame_pb2
from rvqstream.models import Batch, Codec, Tier
from rvqstream.models.errors import Cancel
from rvqstream.models.stream import written
from rvqstream.server.errors import ServiceError, invalid
from rvqstream.server.scheduler import Scheduler, WorkItem, token_estimate
from rvqstream.server.telemetry import Metrics
from rvqstream.wire import tier_from_pb, tier_to_pb

MAX_DELAY_MS = 60_000
SLACK_S, SLACK_FRACTION = 0.005, 0.05   # flush margin for timer and loop jitter: 5 ms + 5% of the budget


@dataclass(frozen=True)
class StreamLimits:
    """``default_delay_ms``: budget when a stream names none; ``max_chunk_bytes``: largest chunk
    and, in UTF-8 bytes, largest message of a stream; ``buffer_bytes``: text buffered before
    reading stops; ``queue_frames``: responses queued for a slow reader."""

    default_delay_ms: int
    max_chunk_bytes: int
    buffer_bytes: int
    queue_frames: int


def stream_settings(codec: Codec, tier_pb: int, stage_count: int, field: str) -> tuple[Tier, int | None]:
    """Validated (tier, stages for ``codec.encoder``/``compress``) from request fields."""
    tier = written_tier(tier_pb, f"{field}.tier")
    if stage_count > codec.parts.stages:
        raise invalid(f"{field}.stage_count is {stage_count}; model {codec.model_id[:12]} has "
                      f"{codec.parts.stages} stages", f"{field}.stage_count")
    return tier, (stage_count or None)


def written_tier(tier_pb: int, field: str) -> Tier:
    """The tier a request asks to be written in: INVALID_ARGUMENT for an unknown value and for the
    semantic text tier, which is retired (its data decodes; none is made)."""
    try:
        tier = tier_from_pb(tier_pb)
        written(tier)
        return tier
    except ValueError as e:
        raise invalid(f"{field}: {e}", field) from None


def check_delay(max_delay_ms: int, field: str) -> None:
    if max_delay_ms > MAX_DELAY_MS:
        raise invalid(f"{field} is {max_delay_ms}; at most {MAX_DELAY_MS}", field)


class EncodeSession:
    """Per-stream encoder state (times are ``time.monotonic()`` seconds). ``emit(batch)`` takes
    each flush's batch in order; ``on_text(text, end)``, when given, is told of the text as it is
    read, and of each message's end (``end`` True)."""

    def __init__(self, codec: Codec, tier: Tier, stages: int | None, max_delay_ms: int,
                 scheduler: Scheduler, metrics: Metrics, limits: StreamLimits,
                 emit: Callable[[Batch], Awaitable[None]],
                 on_text: Callable[[str, bool], None] | None = None):
        self.codec, self.tier, self.scheduler, self.metrics, self.limits = (
            codec, tier, scheduler, metrics, limits)
        self.cancel = Cancel()                  # set when the stream ends: its model work stops
        self.encoder = codec.encoder(tier, stages, cancel=self.cancel)
        self.stage_count = stages or 0
        self.max_delay_ms = max_delay_ms or limits.default_delay_ms
        self.budget = self.max_delay_ms / 1000
        self._emit = emit
        self._on_text = on_text
        self._slack = SLACK_S + SLACK_FRACTION * self.budget
        self._ops: list[tuple] = []          # operations not yet handed to the scheduler
        self._ops_bytes = 0
        self._ops_chars = 0                     # characters of the text in _ops
        self._ops_force = False                 # whether _ops hold a flush or a message end
        self._ops_anchor: float | None = None   # arrival of the oldest text in _ops
        self._anchor: float | None = None       # arrival of the oldest text inside the encoder
        self._last_emit: float | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._bytes_read = 0
        self.message_bytes = 0                  # UTF-8 bytes of the current message so far
        self._input_done = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def header(self) -> frame_pb2.StreamHeader:
        return frame_pb2.StreamHeader(model_id=self.codec.model_id, tier=tier_to_pb(self.tier),
                                      stage_count=self.stage_count, max_delay_ms=self.max_delay_ms)

    async def run(self, requests: AsyncIterator) -> None:
        """Reads ``requests`` (after the config) to their end and emits every batch; raises the
        first error of either side (the other side is cancelled)."""
        reader = asyncio.create_task(self._read(requests))
        worker = asyncio.create_task(self._work())
        try:
            done, _ = await asyncio.wait({reader, worker}, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()
            await worker
        finally:
            self.cancel.cancel()        # a frame being coded for a stream that ended stops there
            for t in (reader, worker):
                t.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)

    # -- input ----------------------------------------------------------------------------------

    async def _read(self, requests: AsyncIterator) -> None:
        async for req in requests:
            kind = req.WhichOneof("kind")
            if kind == "config":
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "config may be sent only once, as the first request", "config")
            if kind is None:
                raise invalid("request carries neither config nor chunk", "kind")
            chunk = req.chunk
            size = len(chunk.text_utf8)
            if size > self.limits.max_chunk_bytes:
                raise invalid(f"chunk.text_utf8 is {size} bytes; at most {self.limits.max_chunk_bytes}",
                              "chunk.text_utf8")
            self.message_bytes += size
            if self.message_bytes > self.limits.max_chunk_bytes:
                raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"a message of a stream holds at most {self.limits.max_chunk_bytes} bytes "
                                   "of text: end it and start another", "chunk.text_utf8")
            text = self._decode(chunk.text_utf8, final=chunk.end_message)
            self._bytes_read += size
            self.metrics.bytes_in.add(size)
            if self._on_text is not None and (text or chunk.end_message):
                self._on_text(text, chunk.end_message)
            new_anchor = bool(text) and self._ops_anchor is None
            if text:
                now = time.monotonic()
                idle = (self._anchor is None and self._ops_anchor is None
                        and (self._last_emit is None or now - self._last_emit >= self.budget))
                if new_anchor:                 # it reached the socket about one loop lag ago
                    self._ops_anchor = now - self.scheduler.lag.value
                if self._ops and self._ops[-1][0] == "push":    # one push for a run of chunks:
                    self._ops[-1] = ("push", self._ops[-1][1] + text)   # one tokenizer call
                else:
                    self._ops.append(("push", text))
                self._ops_bytes += size
                self._ops_chars += len(text)
                if idle and not chunk.end_message:   # Nagle: an idle stream's first text goes at once
                    self._ops.append(("flush",))
                    self._ops_force = True
                    self._last_emit = now            # text right behind it waits for company
            if chunk.end_message:
                self._ops.append(("end",))
                self._ops_force = True
                self.message_bytes = 0
            elif chunk.flush:
                self._ops.append(("flush",))
                self._ops_force = True
            full = self._ops_bytes > self.limits.buffer_bytes
            if full:
                self._room.clear()
            # the worker wakes for work it would not hold back, and for new text's flush timer
            if new_anchor or full or not self._holds_back(time.monotonic(), self._oldest()):
                self._wake.set()
            if full:
                await self._room.wait()
        self._decode(b"", final=True)
        self._input_done = True
        self._wake.set()

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            return self._utf8.decode(data, final=final)
        except UnicodeDecodeError as e:
            at = self._bytes_read + e.start
            what = "ends inside a UTF-8 character" if e.reason == "unexpected end of data" else e.reason
            raise invalid(f"chunk.text_utf8 is not valid UTF-8: stream byte {at} {what}",
                          "chunk.text_utf8") from None

    # -- work -----------------------------------------------------------------------------------

    def _oldest(self) -> float | None:
        times = [t for t in (self._anchor, self._ops_anchor) if t is not None]
        return min(times) if times else None

    def _flush_at(self, oldest: float) -> float:
        """When to flush so the batch is out within the budget of ``oldest``'s arrival."""
        return oldest + self.budget - self._slack - self.scheduler.expected_delay()

    def _holds_back(self, now: float, oldest: float | None) -> bool:
        """Whether the pending operations may wait for more text: pushes only, too little text
        for a full frame (a push codes only full frames, and holds them until a flush: running it
        now would only tokenize), not yet due, while the input goes on and the buffer has room.
        A stream's words then reach the scheduler a frame's worth or a flush at a time, not one
        work item each."""
        if self._input_done or not self._room.is_set():
            return False
        if oldest is not None and now >= self._flush_at(oldest):
            return False
        return (not self._ops_force
                and token_estimate(self.encoder, self._ops_chars, False, self.encoder.parts.frame) == 0)

    async def _work(self) -> None:
        while True:
            oldest = self._oldest()
            now = time.monotonic()
            flush_due = self._anchor is not None and now >= self._flush_at(oldest)
            if not self._ops and not flush_due and self._input_done:
                if self._anchor is None:
                    return
                flush_due = True         # the input ended without a message end: flush what is held
            if not flush_due and (not self._ops or self._holds_back(now, oldest)):
                self._wake.clear()
                timeout = None if oldest is None else max(0.0, self._flush_at(oldest) - now)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            ops, ops_anchor = self._ops, self._ops_anchor
            self._ops, self._ops_bytes, self._ops_anchor = [], 0, None
            self._ops_chars, self._ops_force = 0, False
            self._room.set()
            if ops_anchor is not None and now >= self._flush_at(ops_anchor):
                flush_due = True
            if flush_due and not (ops and ops[-1][0] in ("flush", "end")):
                ops.append(("flush",))
            await self._run(ops, oldest)

    async def _run(self, ops: list[tuple], oldest: float | None) -> None:
        deadline = None if oldest is None else oldest + self.budget
        item = WorkItem(self.encoder, ops, deadline)
        batches = await self.scheduler.run(item)
        done = time.monotonic()
        self._anchor = None if self.encoder.pending == 0 else oldest
        m = self.metrics
        for b in batches:
            self._last_emit = done
            m.frames.add(b.frames - b.fallback_frames, {"kind": "model"})
            m.frames.add(b.fallback_frames, {"kind": "fallback"})
            m.fallback_frames.add(b.fallback_frames)
            m.degraded_frames.add(b.degraded_frames)
            m.bytes_out.add(len(b.data))
            if oldest is not None:
                m.frame_latency.record((done - oldest) * 1000)
                if done > deadline:
                    m.deadline_misses.add(1)
            await self._emit(b)


class EncodeStreamSession:
    """EncodeStream: the session's batches go back to the caller through a bounded queue."""

    def __init__(self, codec: Codec, config: codec_pb2.EncodeConfig, scheduler: Scheduler,
                 metrics: Metrics, limits: StreamLimits):
        tier, stages = stream_settings(codec, config.tier, config.stage_count, "config")
        check_delay(config.max_delay_ms, "config.max_delay_ms")
        self.out: asyncio.Queue = asyncio.Queue(maxsize=limits.queue_frames)
        self.session = EncodeSession(codec, tier, stages, config.max_delay_ms, scheduler, metrics,
                                     limits, self._emit)

    async def _emit(self, batch: Batch) -> None:
        await self.out.put(codec_pb2.EncodeStreamResponse(frames=batch.data))

    async def responses(self, requests: AsyncIterator) -> AsyncIterator[codec_pb2.EncodeStreamResponse]:
        yield codec_pb2.EncodeStreamResponse(header=self.session.header())
        async for item in drain(self.session.run(requests), self.out):
            yield item


async def drain(work: Awaitable[None], out: asyncio.Queue) -> AsyncIterator:
    """Runs ``work`` while yielding what it puts in ``out``; raises its error after what came before."""
    end = object()

    async def run() -> None:
        try:
            await work
        finally:
            await out.put(end)

    task = asyncio.create_task(run())
    try:
        while (item := await out.get()) is not end:
            yield item
        await task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

