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
from rvqstream.server.logstore import MessageState, Part, PartConflict, Record, StreamKey
from rvqstream.server.nats_events import code_from_pb
from rvqstream.server.sqlite_store import SQLiteLogStore

log = logging.getLogger(__name__)


class FoldedStream:
    """One JetStream stream as this replica folds it: the last stream sequence handed to the view
    (``queued``) and the last one the view applied (``applied``), per channel the sequence of its
    last creation event applied, and the settling of the events in flight (``tail``)."""

    def __init__(self, name: str):
        self.name = name
        self.queued = 0
        self.applied = 0
        self.last_created: dict[str, int] = {}
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
            except Exception as e:     # a view that cannot take an event is reported; the fold goes on
                log.exception("event %d of stream %s could not be folded", seq, stream.name)
                outcome = e
            kind = event.WhichOneof("event")
            if kind in ("append", "retain") or (kind == "part" and event.part.creates):   # a creation subject's
                stream.last_created[event.channel] = seq
            if event.writer == self.writer:
                self._outcomes[(stream.name, seq)] = outcome
        stream.in_flight -= 1
        async with stream.folded:
            stream.applied = seq
            stream.folded.notify_all()

    async def _apply(self, event: log_pb2.LogEvent, created_at: int):
        """Applies ``event`` (stored in JetStream at ``created_at``, Unix seconds) -> its outcome.
        Its write is handed to the view before the first ``await`` returns (the order of events)."""
        channel, kind = event.channel, event.WhichOneof("event")
        if kind == "append":
            first = event.append.first_offset
            records = [Record(r.blob, r.model_id, r.producer_id, r.sequence, code_from_pb(r.code))
                       for r in event.append.records]
            out = await self.view.append(channel, records, start=first, created_at=created_at)
            fresh = [a.offset for a in out if not a.duplicate]
            if fresh and fresh[0] != first:
                log.error("channel %r: an event names offset %d, the view gave %d", channel, first, fresh[0])
            return out
        if kind == "part":
            p = event.part
            key = StreamKey(p.producer_id, p.sequence, p.model_id, p.tier)
            part = Part(p.index, p.batch, p.text_bytes, p.crc, p.end, code_from_pb(p.code))
            info = await self.view.append_part(channel, key, part, start=p.offset, create=p.creates,
                                               created_at=created_at)
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

    def _note_activity(self, channel: str, offset: int, state: MessageState) -> None:
        if state == MessageState.STREAMING:
            self._activity[(channel, offset)] = time.monotonic()
        else:
            self._activity.pop((channel, offset), None)
