"""Folding a JetStream channel log into a replica's view (nats_log.py): every event of a stream,
in stream order, applied to a local SQLite log, the same way on every replica, so that every
replica's view holds the same offsets, messages, parts and states.

The fold keeps, for the replica's writers, the outcome of each of their own events (the offsets
a LogAppend got, the StreamInfo of a part, whether an abort closed its message, or the error the
event met: a part out of turn is a ``PartConflict``), and for its abort timers the time of the
last event of each streaming message.
"""

from __future__ import annotations

import asyncio
import logging
import time

from rvqstream._proto import log_pb2
from rvqstream.server.logstore import Appended, Code, MessageState, Part, PartConflict, Record, StreamKey
from rvqstream.server.nats_events import code_from_pb
from rvqstream.server.sqlite_store import SQLiteLogStore

log = logging.getLogger(__name__)

MAX_OUTCOMES = 10_000     # outcomes of this writer's events kept for writers that still wait


class FoldedStream:
    """One JetStream stream as this replica folds it: the last stream sequence handed to the view
    (``queued``) and the last one the view applied (``applied``); per channel, the sequence of its
    last creation event applied (``last_created``) and its next offset then (``ends``), which move
    together; the settling of the events in flight (``tail``); and ``broken``, the error that
    stopped the fold when the view could not follow the stream."""

    def __init__(self, name: str):
        self.name = name
        self.queued = 0
        self.applied = 0
        self.last_created: dict[str, int] = {}
        self.ends: dict[str, int] = {}
        self.broken: Exception | None = None
        self.folded = asyncio.Condition()
        self.tail: asyncio.Future | None = None
        self.in_flight = 0
        self.subscription = None


class Fold:
    """Applies events to ``view`` (a ``SQLiteLogStore``); ``writer`` is this replica's id.

    Events are handed to the view as they arrive, without waiting for the previous one to be
    applied (the view's single writer thread applies them in the order they were handed over, many
    in one transaction), and settle in order: an event's outcome is recorded, and the stream's
    ``applied`` and ``last_created`` move on, only after every earlier event settled. At most
    ``MAX_IN_FLIGHT`` events of a stream wait to settle."""

    MAX_IN_FLIGHT = 1024

    def __init__(self, view: SQLiteLogStore, writer: str):
        self.view, self.writer = view, writer
        self._outcomes: dict[tuple[str, int], object] = {}   # by (stream, seq): this writer's events
        self._activity: dict[tuple[str, int], float] = {}     # streaming messages: last event, monotonic s

    async def folded(self, stream: FoldedStream, seq: int) -> None:
        """Returns once the fold applied the stream's events up to ``seq``."""
        async with stream.folded:
            await stream.folded.wait_for(lambda: stream.applied >= seq)

    def outcome(self, stream: FoldedStream, seq: int) -> object:
        """The outcome of this writer's event ``seq`` (once folded; taken once)."""
        return self._outcomes.pop((stream.name, seq), None)

    def idle_s(self, channel: str, offset: int) -> float:
        """Seconds since the last event of the streaming message at ``offset`` (infinite when it
        is not streaming)."""
        last = self._activity.get((channel, offset))
        return float("inf") if last is None else time.monotonic() - last

    async def fold(self, stream: FoldedStream, msg) -> None:
        """Hands one JetStream message to the view (a subscription callback: they run one at a
        time, in stream order)."""
        seq = msg.metadata.sequence.stream
        if seq <= stream.queued:         # an ordered consumer that restarted delivers from where it was
            return
        stream.queued = seq
        try:
            event = log_pb2.LogEvent.FromString(msg.data)
        except Exception:  # noqa: BLE001 - not an event of this log: skipped
            log.error("message %d of stream %s is not a log event: skipped", seq, stream.name)
            event = None
        if stream.broken is not None:    # the view stopped following: nothing more goes into it
            event = None
        work = (asyncio.ensure_future(self._apply(event, int(msg.metadata.timestamp.timestamp())))
                if event is not None else None)
        stream.tail = asyncio.ensure_future(self._settle(stream, seq, event, work, stream.tail))
        stream.in_flight += 1
        if stream.in_flight > self.MAX_IN_FLIGHT:
            await stream.tail

    async def _settle(self, stream: FoldedStream, seq: int, event: log_pb2.LogEvent | None,
                      work: asyncio.Future | None, previous: asyncio.Future | None) -> None:
        if previous is not None:
            await previous
        if work is not None:
            try:
                outcome = await work
            except PartConflict as e:
                outcome = e
            except Exception as e:  # noqa: BLE001 - the view no longer follows the stream: the fold stops
                log.critical("event %d of stream %s could not be folded: this replica stops writing to "
                             "the stream; restart it to rebuild its view: %s", seq, stream.name, e)
                stream.broken = outcome = e
            if stream.broken is None:
                self._settled(stream, seq, event)
            if event.writer == self.writer:
                self._outcomes[(stream.name, seq)] = outcome
                if len(self._outcomes) > MAX_OUTCOMES:   # of writers that gave up waiting
                    for key in [k for k in self._outcomes if k[0] == stream.name and k[1] < seq - MAX_OUTCOMES]:
                        del self._outcomes[key]
        stream.in_flight -= 1
        async with stream.folded:
            stream.applied = seq
            stream.folded.notify_all()

    @staticmethod
    def _settled(stream: FoldedStream, seq: int, event: log_pb2.LogEvent) -> None:
        """A creation subject's event settled: the channel's last creation and end move on."""
        kind, channel = event.WhichOneof("event"), event.channel
        if kind == "append":
            fresh = sum(not r.HasField("duplicate_of") for r in event.append.records)
            if fresh:
                stream.ends[channel] = event.append.first_offset + fresh
        elif kind == "part" and event.part.creates:
            stream.ends[channel] = event.part.offset + 1
        elif kind != "retain":
            return
        stream.last_created[channel] = seq

    async def _apply(self, event: log_pb2.LogEvent, created_at: int):
        """Applies ``event`` (stored in JetStream at ``created_at``, Unix seconds) -> its outcome.
        Its write is handed to the view before the first ``await`` returns (the order of events).
        A creating event's offsets and duplicates are the event's: the view follows them."""
        channel, kind = event.channel, event.WhichOneof("event")
        if kind == "append":
            return await self._append(channel, event.append, created_at)
        if kind == "part":
            p = event.part
            key = StreamKey(p.producer_id, p.sequence, p.model_id, p.tier)
            part = Part(p.index, p.batch, p.text_bytes, p.crc, p.end, code_from_pb(p.code))
            info = await self.view.append_part(channel, key, part, at=p.offset if p.creates else None,
                                               create=p.creates, created_at=created_at)
            self._note_activity(channel, info.offset, info.state)
            return info
        if kind == "abort":
            aborted = await self.view.abort(channel, event.abort.offset, code_from_pb(event.abort.code))
            self._activity.pop((channel, event.abort.offset), None)
            return aborted
        if kind == "retain":
            return await self.view.retain_below(channel, event.retain.first_offset)
        if kind == "touch":              # a message still streaming is written to
            if (channel, event.touch.offset) in self._activity:
                self._activity[(channel, event.touch.offset)] = time.monotonic()
            return None
        raise ValueError(f"unknown log event {kind!r}")

    async def _append(self, channel: str, event: log_pb2.LogAppend, created_at: int) -> list[Appended]:
        """The event's records: a duplicate is its ``duplicate_of``; the others are stored at
        ``first_offset`` on, a near-duplicate naming the offset of the record it repeats."""
        offsets, fresh, k = [], [], event.first_offset
        for r in event.records:
            if r.HasField("duplicate_of"):
                offsets.append(r.duplicate_of)
                continue
            code = code_from_pb(r.code)
            if code is not None and code.near_record is not None:
                code = Code(code.model_id, code.code, offsets[code.near_record], None)
            fresh.append(Record(r.blob, r.model_id, r.producer_id, r.sequence, code))
            offsets.append(k)
            k += 1
        if fresh:
            await self.view.append(channel, fresh, at=event.first_offset, created_at=created_at)
        return [Appended(o, r.HasField("duplicate_of")) for o, r in zip(offsets, event.records)]

    def _note_activity(self, channel: str, offset: int, state: MessageState) -> None:
        if state == MessageState.STREAMING:
            self._activity[(channel, offset)] = time.monotonic()
        else:
            self._activity.pop((channel, offset), None)
