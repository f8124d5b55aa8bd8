"""One encode stream's state: UTF-8 reassembly, pending text, the latency-budget timer, output queue.

Three coroutines per stream: ``_read`` turns chunks into pending operations (and stops reading
while ``buffer_bytes`` of text wait, so HTTP/2 flow control pushes back on the producer);
``_work`` hands pending operations to the scheduler one batch at a time and flushes the encoder
when the oldest unframed byte is about to exceed the budget; the RPC handler drains the bounded
output queue (a slow reader stops ``_work``, which stops ``_read``).
"""

from __future__ import annotations

import asyncio
import codecs
import time
from dataclasses import dataclass

import grpc

from rvqstream._proto import codec_pb2, frame_pb2
from rvqstream.models import Codec, FrameKind, Tier
from rvqstream.server.errors import ServiceError, invalid
from rvqstream.server.scheduler import Scheduler, WorkItem
from rvqstream.server.telemetry import Metrics
from rvqstream.wire import frame_to_pb, tier_from_pb, tier_to_pb

MAX_DELAY_MS = 60_000
SLACK_S, SLACK_FRACTION = 0.005, 0.05   # flush margin for timer and loop jitter: 5 ms + 5% of the budget
_END = object()


@dataclass(frozen=True)
class StreamLimits:
    default_delay_ms: int
    max_chunk_bytes: int
    buffer_bytes: int
    queue_frames: int


def stream_settings(codec: Codec, tier_pb: int, stage_count: int, field: str) -> tuple[Tier, int | None]:
    """Validated (tier, stages for ``codec.encoder``/``compress``) from request fields."""
    try:
        tier = tier_from_pb(tier_pb)
    except ValueError as e:
        raise invalid(f"{field}.tier: {e}", f"{field}.tier") from None
    if stage_count > codec.parts.stages:
        raise invalid(f"{field}.stage_count is {stage_count}; model {codec.model_id[:12]} has "
                      f"{codec.parts.stages} stages", f"{field}.stage_count")
    return tier, (stage_count or None)


class EncodeSession:
    """Per-stream encoder state (times are ``time.monotonic()`` seconds)."""

    def __init__(self, codec: Codec, config: codec_pb2.EncodeConfig, scheduler: Scheduler,
                 metrics: Metrics, limits: StreamLimits):
        tier, stages = stream_settings(codec, config.tier, config.stage_count, "config")
        if config.max_delay_ms > MAX_DELAY_MS:
            raise invalid(f"config.max_delay_ms is {config.max_delay_ms}; at most {MAX_DELAY_MS}",
                          "config.max_delay_ms")
        self.codec, self.tier, self.scheduler, self.metrics, self.limits = (
            codec, tier, scheduler, metrics, limits)
        self.encoder = codec.encoder(tier, stages)
        self.stage_count = stages or (codec.parts.stages if tier == Tier.SEMANTIC else 0)
        self.max_delay_ms = config.max_delay_ms or limits.default_delay_ms
        self.budget = self.max_delay_ms / 1000
        self._slack = SLACK_S + SLACK_FRACTION * self.budget
        self._degraded_cap = self.encoder.min_stages if tier == Tier.EXACT else 1
        self._ops: list[tuple] = []          # operations not yet handed to the scheduler
        self._ops_bytes = 0
        self._ops_anchor: float | None = None   # arrival of the oldest text in _ops
        self._anchor: float | None = None       # arrival of the oldest text inside the encoder
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._bytes_read = 0
        self._input_done = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.out: asyncio.Queue = asyncio.Queue(maxsize=limits.queue_frames)
        self.error: BaseException | None = None
        self._tasks: list[asyncio.Task] = []

    def header(self) -> frame_pb2.StreamHeader:
        return frame_pb2.StreamHeader(model_id=self.codec.model_id, tier=tier_to_pb(self.tier),
                                      stage_count=self.stage_count, max_delay_ms=self.max_delay_ms)

    async def responses(self, requests):
        """Reads ``requests`` (after the config) and yields EncodeStreamResponse frames."""
        self._tasks = [asyncio.create_task(self._guard(self._read(requests))),
                       asyncio.create_task(self._guard(self._work()))]
        try:
            while (item := await self.out.get()) is not _END:
                yield item
            if self.error is not None:
                raise self.error
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _guard(self, coro) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the stream ends with this error
            self._fail(e)

    def _fail(self, error: BaseException) -> None:
        if self.error is not None:
            return
        self.error = error
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        while not self.out.empty():
            self.out.get_nowait()
        self.out.put_nowait(_END)

    # -- input ----------------------------------------------------------------------------------

    async def _read(self, requests) -> None:
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
            text = self._decode(chunk.text_utf8, final=chunk.end_message)
            self._bytes_read += size
            self.metrics.bytes_in.add(size)
            if text:
                if self._ops_anchor is None:   # it reached the socket about one loop lag ago
                    self._ops_anchor = time.monotonic() - self.scheduler.lag.value
                self._ops.append(("push", text))
                self._ops_bytes += size
            if chunk.end_message:
                self._ops.append(("end",))
            elif chunk.flush:
                self._ops.append(("flush",))
            self._wake.set()
            if self._ops_bytes > self.limits.buffer_bytes:
                self._room.clear()
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
        """When to flush so the frame is out within the budget of ``oldest``'s arrival."""
        return oldest + self.budget - self._slack - self.scheduler.expected_delay()

    async def _work(self) -> None:
        while True:
            oldest = self._oldest()
            now = time.monotonic()
            flush_due = self._anchor is not None and now >= self._flush_at(oldest)
            if not self._ops and not flush_due:
                if self._input_done:
                    if self._anchor is None:
                        break
                    flush_due = True
                else:
                    self._wake.clear()
                    timeout = None if oldest is None else max(0.0, self._flush_at(oldest) - now)
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        pass
                    continue
            ops, ops_anchor = self._ops, self._ops_anchor
            self._ops, self._ops_bytes, self._ops_anchor = [], 0, None
            self._room.set()
            if ops_anchor is not None and now >= self._flush_at(ops_anchor):
                flush_due = True
            if flush_due and not (ops and ops[-1][0] in ("flush", "end")):
                ops.append(("flush",))
            await self._run(ops, oldest)
        await self.out.put(_END)

    async def _run(self, ops: list[tuple], oldest: float | None) -> None:
        deadline = None if oldest is None else oldest + self.budget
        item = WorkItem(self.encoder, ops, deadline, self.codec.parts.stages, self._degraded_cap)
        frames = await self.scheduler.run(item)
        done = time.monotonic()
        self._anchor = None if self.encoder.pending_text == 0 else oldest
        m = self.metrics
        for f in frames:
            m.frames.add(1, {"kind": f.kind.name.lower()})
            m.bytes_out.add(len(f.payload))
            if f.kind != FrameKind.MODEL and f.n_tokens:
                m.fallback_frames.add(1)
            if item.degraded:
                m.degraded_frames.add(1)
            if oldest is not None:
                m.frame_latency.record((done - oldest) * 1000)
                if done > deadline:
                    m.deadline_misses.add(1)
            await self.out.put(codec_pb2.EncodeStreamResponse(frame=frame_to_pb(f, item.degraded)))
