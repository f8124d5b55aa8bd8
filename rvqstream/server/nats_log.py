"""The channel log in NATS JetStream, shared by any number of server replicas (``--log nats://…``).

Layout (docs/formats.md §8, ``nats_events.py``): one JetStream stream per channel namespace, each
JetStream message one ``LogEvent`` (log.proto). Events that create messages (whole messages, a
streamed message's first part) go on the channel's creation subject, published with
``Nats-Expected-Last-Subject-Sequence`` set to the channel's last creation event this replica has
folded: JetStream takes the event only if no replica created a message in the channel since, so the
offsets an event names are the channel's next ones, dense and never reused whichever replica writes
and however often replicas restart (a refused event is retried once this replica caught up). Later
parts, aborts and touches go on the channel's update subject. Every event carries a
``Nats-Msg-Id``: a publish retried after a lost acknowledgement is stored once.

Each replica folds every event of the streams it serves, in stream order, into a local SQLite log
(nats_fold.py; ``SQLiteLogStore`` with ``durable=False``: a view, rebuilt from JetStream at every
start) and answers every read from it; its live readers wake as the fold writes. A write returns once
JetStream acknowledged it (stored on the stream's replicas; on disk with the shipped
``sync_interval: always``) and this replica folded it: the fold decides its outcome (offsets,
duplicates, a refused part), the same on every replica.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from pathlib import Path

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from rvqstream._proto import log_pb2
from rvqstream.server.logstore import (
    Appended,
    Code,
    CodeEntry,
    Entry,
    LogFull,
    LogStore,
    LogUnavailable,
    MessageState,
    Part,
    PartConflict,
    Record,
    Retention,
    StreamInfo,
    StreamKey,
)
from rvqstream.server.nats_events import Layout, code_to_pb
from rvqstream.server.nats_fold import Fold, FoldedStream
from rvqstream.server.nats_purge import purge_removed
from rvqstream.server.sqlite_store import SQLiteLogStore

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071      # JetStream's error code: the expected last subject sequence moved on
STORAGE_FULL = (10002, 10023, 10047)   # account resources, insufficient resources, storage exceeded
STREAM_NAME_IN_USE = 10058
PUBLISH_TIMEOUT_S = 10.0
PUBLISH_TRIES = 3               # a write unacknowledged this often is UNAVAILABLE
START_TIMEOUT_S = 120.0         # how long a starting replica waits for its cluster
EVENT_OVERHEAD = 1024            # bytes an event adds to its records' (headers, fields)
RECORD_OVERHEAD = 4096           # bytes a record adds to its message's text, at most (blob header, code, keys)
VIEW_FILE = "view.sqlite3"


class NatsLogStore(LogStore):
    """Channels in NATS JetStream; see the module docstring. ``servers``: NATS URLs;
    ``view_dir``: where this replica keeps its view (emptied at start); ``prefix``: this
    deployment's stream and subject prefix; ``replicas``: JetStream replicas of each stream it
    creates; ``credentials``: a NATS .creds file (empty: none); ``max_message_bytes``: the
    largest message the server takes (the NATS servers' ``max_payload`` must hold one)."""

    shared = True

    def __init__(self, servers: list[str], view_dir: Path, prefix: str = "rvq", replicas: int = 1,
                 credentials: str = "", max_message_bytes: int = 1 << 20):
        self.servers, self.replicas, self.credentials = servers, replicas, credentials
        self.max_message_bytes = max_message_bytes
        self.layout = Layout(prefix)
        self.writer = uuid.uuid4().hex
        view_dir = Path(view_dir)
        if (view_dir / VIEW_FILE).exists():
            for stale in view_dir.glob(VIEW_FILE + "*"):
                stale.unlink()
        self.view = SQLiteLogStore(view_dir / VIEW_FILE, durable=False)
        self.fold = Fold(self.view, self.writer)
        self._streams: dict[str, FoldedStream] = {}
        self._opening: dict[str, asyncio.Task] = {}
        self._creating: dict[str, asyncio.Lock] = {}          # by channel: this replica's creators take turns
        self._writes: set[asyncio.Task] = set()
        self._nc = None
        self._js = None
        self._max_event = 1 << 20

    # -- connecting and folding ----------------------------------------------------------------

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Connects and folds this deployment's streams; while the cluster cannot answer (a node
        restarting, a leader being elected) it tries again, for at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await asyncio.wait_for(self._start_once(), max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                raise LogUnavailable(f"NATS at {', '.join(self.servers)} did not answer within {timeout_s:.0f} s") \
                    from None
            except LogUnavailable as e:
                if time.monotonic() > deadline:
                    raise
                log.warning("JetStream not ready (%s): trying again", e)
                await asyncio.sleep(1.0)

    async def _start_once(self) -> None:
        if self._nc is not None:
            return await self._open_all()
        options = {"servers": self.servers, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                   "connect_timeout": 5, "allow_reconnect": True, "name": f"rvqstream-{self.writer[:8]}"}
        if self.credentials:
            options["user_credentials"] = self.credentials
        try:
            self._nc = await nats.connect(**options)
        except (NatsError, OSError) as e:
            raise LogUnavailable(f"cannot reach NATS at {', '.join(self.servers)}: {e}") from None
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._max_event = self._nc.max_payload - EVENT_OVERHEAD
        if self._max_event < self.max_message_bytes + RECORD_OVERHEAD:
            await self._nc.close()
            raise ValueError(f"NATS max_payload is {self._nc.max_payload} bytes: too small for messages of "
                             f"--max-message-bytes {self.max_message_bytes}; set max_payload to at least "
                             f"{self.max_message_bytes + RECORD_OVERHEAD + EVENT_OVERHEAD} in the NATS servers' "
                             "configuration (the shipped ones: 8MB)")
        await self._open_all()

    async def _open_all(self) -> None:
        try:
            infos = await self._js.streams_info()
        except NatsError as e:
            raise LogUnavailable(f"JetStream: {e}") from None
        for info in infos:              # this deployment's streams: fold them all (open messages, abort timers)
            if self.layout.owns_stream(info.config.name) and info.config.subjects:
                await self._open(info.config.name, info.config.subjects[0])

    async def _stream(self, channel: str, create: bool) -> FoldedStream | None:
        """The folded stream of ``channel``'s namespace, created when ``create`` (None when it
        does not exist and ``create`` is false)."""
        name, subjects = self.layout.stream(channel)
        stream = self._streams.get(name)
        if stream is not None:
            return stream
        if not create:
            try:
                await self._js.stream_info(name)
            except NotFoundError:
                return None
            except NatsError as e:
                raise LogUnavailable(f"JetStream: {e}") from None
        return await self._open(name, subjects)

    async def _open(self, name: str, subjects: str) -> FoldedStream:
        """Creates the stream if need be, starts folding it and waits until the fold caught up
        (concurrent callers share one opening)."""
        if name in self._streams:
            return self._streams[name]
        task = self._opening.get(name)
        if task is None:
            task = self._opening[name] = asyncio.ensure_future(self._open_once(name, subjects))
            task.add_done_callback(lambda _: self._opening.pop(name, None))
        return await asyncio.shield(task)

    async def _open_once(self, name: str, subjects: str) -> FoldedStream:
        config = StreamConfig(name=name, subjects=[subjects], storage=StorageType.FILE,
                              num_replicas=self.replicas, duplicate_window=120.0, allow_direct=True)
        try:
            try:
                await self._js.add_stream(config)
            except BadRequestError as e:
                if e.err_code != STREAM_NAME_IN_USE:
                    raise
            stream = FoldedStream(name)
            stream.subscription = await self._js.subscribe(
                subjects, stream=name, ordered_consumer=True, cb=functools.partial(self.fold.fold, stream),
                idle_heartbeat=2.0)
            self._streams[name] = stream
            await self._caught_up(stream)
            return stream
        except NatsError as e:
            raise LogUnavailable(f"JetStream stream {name}: {e}") from None

    async def _caught_up(self, stream: FoldedStream) -> None:
        """Returns once this replica folded every event the stream held when called."""
        try:
            info = await self._js.stream_info(stream.name)
        except NatsError as e:
            raise LogUnavailable(f"JetStream stream {stream.name}: {e}") from None
        await self.fold.folded(stream, info.state.last_seq)

    # -- writing -------------------------------------------------------------------------------

    async def _publish(self, stream: FoldedStream, channel: str, event: log_pb2.LogEvent,
                       expected: int | None) -> tuple[int | None, object]:
        """Publishes ``event``: on the channel's creation subject when ``expected`` (the sequence
        of the channel's last creation event the writer saw; JetStream takes the event only if it
        is still the last), else on its update subject -> (its stream sequence, its outcome) once
        folded; (None, None) when another creation came first (the caller catches up and tries
        again). A publish whose acknowledgement does not come is sent again with the same
        ``Nats-Msg-Id`` (JetStream stores it once), up to ``PUBLISH_TRIES`` times."""
        self._check(stream)
        event.channel, event.writer = channel, self.writer
        headers = {"Nats-Msg-Id": uuid.uuid4().hex}
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
        subject, data = self.layout.subject(channel, expected is not None), event.SerializeToString()
        for attempt in range(PUBLISH_TRIES):
            try:
                ack = await self._js.publish(subject, data, headers=headers)
                break
            except APIError as e:
                if e.err_code == WRONG_LAST_SEQUENCE:
                    return None, None
                if e.err_code in STORAGE_FULL:
                    raise LogFull(f"JetStream has no room for the write ({e.description})") from None
                raise LogUnavailable(f"JetStream refused the write: {e}") from None
            except NatsTimeoutError as e:
                if attempt == PUBLISH_TRIES - 1:
                    raise LogUnavailable(f"JetStream did not acknowledge the write: {e}") from None
            except NatsError as e:
                raise LogUnavailable(f"JetStream: {e}") from None
        await self.fold.folded(stream, ack.seq)
        self._check(stream)
        outcome = self.fold.outcome(stream, ack.seq)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is None and event.WhichOneof("event") in ("append", "part"):
            raise LogUnavailable(f"event {ack.seq} is stored but was purged before this replica folded it: "
                                 "retry the write")
        return ack.seq, outcome

    @staticmethod
    def _check(stream: FoldedStream) -> None:
        """``LogUnavailable`` once this replica's view stopped following the stream."""
        if stream.broken is not None:
            raise LogUnavailable(f"this replica's view of JetStream stream {stream.name} stopped following it "
                                 f"({stream.broken}): restart the replica to rebuild it")

    async def _detached(self, work):
        """Runs the write ``work`` (a coroutine) to its end even if the caller goes away, as a
        write handed to the SQLite log's writer thread does."""
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    def _creators(self, channel: str) -> asyncio.Lock:
        """The lock this replica's creators of messages in ``channel`` take turns with."""
        lock = self._creating.get(channel)
        if lock is None:
            lock = self._creating[channel] = asyncio.Lock()
        return lock

    async def append(self, channel: str, records: list[Record]) -> list[Appended]:
        return await self._detached(self._append(channel, records))

    async def _append(self, channel: str, records: list[Record]) -> list[Appended]:
        stream = await self._stream(channel, create=True)
        out: list[Appended] = []
        async with self._creators(channel):
            for run in self._runs(records):
                while True:
                    expected = stream.last_created.get(channel, 0)     # these two move together:
                    end = stream.ends.get(channel, 0)                   # read before the view
                    event = await self._append_event(channel, run, len(out), out, end)
                    seq, appended = await self._publish(stream, channel, event, expected)
                    if seq is not None:
                        break
                    await self._caught_up(stream)
                out += appended
        return out

    async def _append_event(self, channel: str, run: list[Record], base: int, earlier: list[Appended],
                            end: int) -> log_pb2.LogEvent:
        """The ``LogAppend`` of ``run`` (records ``base`` on of an append whose first records got
        ``earlier``) at ``end``: a record whose producer key the channel holds (or an earlier
        record of the run holds) names that message as ``duplicate_of``."""
        keys = [(r.producer_id, r.sequence) for r in run if r.producer_id]
        held = {k: info.offset for k, info in (await self.view.find_keys(channel, keys)).items()} if keys else {}
        pbs, next_offset = [], end
        for r in run:
            pb = log_pb2.LogRecord(blob=r.blob, model_id=r.model_id, producer_id=r.producer_id,
                                   sequence=r.sequence, code=code_to_pb(_in_run(r.code, base, earlier)))
            key = (r.producer_id, r.sequence)
            if r.producer_id and key in held:
                pb.duplicate_of = held[key]
            else:
                if r.producer_id:
                    held[key] = next_offset
                next_offset += 1
            pbs.append(pb)
        return log_pb2.LogEvent(append=log_pb2.LogAppend(first_offset=end, records=pbs))

    def _runs(self, records: list[Record]) -> list[list[Record]]:
        """``records`` in runs that fit in one event each (a record's near-duplicate reference
        into its own append names an earlier record of the same run or an earlier run)."""
        runs, run, size = [], [], 0
        for r in records:
            cost = _record_bytes(r)
            if cost > self._max_event:
                raise ValueError(f"a message of {len(r.blob)} bytes does not fit in a NATS message of "
                                 f"{self._max_event + EVENT_OVERHEAD} bytes (the server's max_payload)")
            if run and size + cost > self._max_event:
                runs.append(run)
                run, size = [], 0
            run.append(r)
            size += cost
        return [*runs, run] if run else runs

    async def append_part(self, channel: str, key: StreamKey, part: Part) -> StreamInfo:
        return await self._detached(self._append_part(channel, key, part))

    async def _append_part(self, channel: str, key: StreamKey, part: Part) -> StreamInfo:
        if len(part.batch) > self._max_event:
            raise ValueError(f"a frame batch of {len(part.batch)} bytes does not fit in a NATS message")
        stream = await self._stream(channel, create=True)
        lock = None
        try:
            while True:
                expected, end = stream.last_created.get(channel, 0), stream.ends.get(channel, 0)
                info = (await self.view.find_keys(channel, [(key.producer_id, key.sequence)])).get(
                    (key.producer_id, key.sequence))
                if info is not None:      # a later part: the fold refuses it if it is out of turn
                    if info.state != MessageState.STREAMING:
                        raise PartConflict(f"message {info.offset} is {info.state.name.lower()}: "
                                           "it takes no more text")
                    return (await self._publish(stream, channel, _part_event(key, part, info.offset, False),
                                                None))[1]
                if lock is None:          # a first part: creators take turns, then look again
                    lock = self._creators(channel)
                    await lock.acquire()
                    continue
                seq, result = await self._publish(stream, channel, _part_event(key, part, end, True), expected)
                if seq is not None:
                    return result
                await self._caught_up(stream)
        finally:
            if lock is not None:
                lock.release()

    async def abort(self, channel: str, offset: int, code: Code | None = None) -> bool:
        return await self._detached(self._abort(channel, offset, code))

    async def _abort(self, channel: str, offset: int, code: Code | None) -> bool:
        stream = await self._stream(channel, create=False)
        if stream is None:
            return False
        event = log_pb2.LogEvent(abort=log_pb2.LogAbort(offset=offset, code=code_to_pb(code)))
        return bool((await self._publish(stream, channel, event, None))[1])

    async def touch(self, channel: str, offset: int) -> None:
        stream = await self._stream(channel, create=False)
        if stream is not None:
            await self._publish(stream, channel, log_pb2.LogEvent(touch=log_pb2.LogTouch(offset=offset)), None)

    def idle_s(self, channel: str, offset: int) -> float | None:
        return self.fold.idle_s(channel, offset)

    async def retain(self, retention: Retention) -> int:
        """Applies ``retention`` with the SQLite log's rules to every channel this replica folds:
        a ``LogRetain`` per channel it shortens (on the creation subject under its expected last
        sequence, so replicas retaining at once agree: a refused one waits for the next round),
        then JetStream drops the removed messages' events -> messages removed."""
        removed = 0
        for channel, (_, keep) in (await self.view.retention_points(retention)).items():
            stream = await self._stream(channel, create=False)
            if stream is None:
                continue
            event = log_pb2.LogEvent(retain=log_pb2.LogRetain(first_offset=keep))
            async with self._creators(channel):
                seq, n = await self._detached(self._publish(stream, channel, event,
                                                            stream.last_created.get(channel, 0)))
            if seq is None:
                continue
            removed += n
            try:
                await purge_removed(self._js, self.layout, stream.name, channel, keep, seq)
            except NatsError as e:      # the events stay until a later round purges them
                log.warning("channel %r: JetStream purge failed: %s", channel, e)
        return removed

    # -- reading: the view, once this replica folded what the question needs -------------------

    async def _catch_up(self, channel: str) -> bool:
        """Folds the stream of ``channel``'s namespace up to its last event now; False when the
        stream does not exist."""
        stream = await self._stream(channel, create=False)
        if stream is None:
            return False
        await self._caught_up(stream)
        return True

    async def find_stream(self, channel: str, producer_id: str, sequence: int) -> StreamInfo | None:
        if not await self._catch_up(channel):   # a producer resuming through this replica finds its message
            return None
        return await self.view.find_stream(channel, producer_id, sequence)

    async def end_offset(self, channel: str) -> int | None:
        end = await self.view.end_offset(channel)
        if end is None:                   # a channel another replica just created: catch up first
            return await self.settled_end_offset(channel)
        return end

    async def settled_end_offset(self, channel: str) -> int | None:
        return await self.view.end_offset(channel) if await self._catch_up(channel) else None

    async def open_streams(self) -> list[tuple[str, int]]:
        await self._open_all()          # namespaces other replicas created since this one started
        return await self.view.open_streams()

    async def read(self, channel: str, from_offset: int, limit: int, limit_bytes: int) -> list[Entry]:
        return await self.view.read(channel, from_offset, limit, limit_bytes)

    async def read_codes(self, channel: str, from_offset: int, limit: int) -> list[CodeEntry]:
        return await self.view.read_codes(channel, from_offset, limit)

    async def first_offset(self, channel: str) -> int:
        return await self.view.first_offset(channel)

    async def read_parts(self, channel: str, offset: int, from_part: int,
                         limit_bytes: int) -> tuple[list[bytes], MessageState]:
        return await self.view.read_parts(channel, offset, from_part, limit_bytes)

    async def stream_state(self, channel: str, offset: int) -> tuple[MessageState, int]:
        return await self.view.stream_state(channel, offset)

    def version(self, channel: str) -> int:
        return self.view.version(channel)

    async def wait_change(self, channel: str, version: int) -> None:
        await self.view.wait_change(channel, version)

    async def close(self) -> None:
        await asyncio.gather(*self._writes, return_exceptions=True)
        for stream in self._streams.values():
            if stream.subscription is not None:
                try:
                    await stream.subscription.unsubscribe()
                except NatsError:
                    pass
        if self._nc is not None:
            try:
                await self._nc.drain()
            except NatsError:
                await self._nc.close()
        await self.view.close()


def _in_run(code: Code | None, base: int, earlier: list[Appended]) -> Code | None:
    """``code`` as a record of a run that starts at record ``base`` of its append: a near-duplicate
    of a record in an earlier run names that record's offset instead."""
    if code is None or code.near_record is None:
        return code
    if code.near_record >= base:
        return Code(code.model_id, code.code, None, code.near_record - base)
    return Code(code.model_id, code.code, earlier[code.near_record].offset, None)


def _part_event(key: StreamKey, part: Part, offset: int, creates: bool) -> log_pb2.LogEvent:
    """The ``LogPart`` of ``part`` of the message ``key`` at ``offset`` (creating it or not)."""
    return log_pb2.LogEvent(part=log_pb2.LogPart(
        offset=offset, creates=creates, producer_id=key.producer_id, sequence=key.sequence,
        model_id=key.model_id, tier=key.tier, index=part.index, batch=part.batch,
        text_bytes=part.text_bytes, crc=part.crc, end=part.end, code=code_to_pb(part.code)))


def _record_bytes(record: Record) -> int:
    """At least the bytes ``record`` takes in a ``LogAppend`` (its fields, with room for every
    tag, length and varint)."""
    code = record.code
    code_bytes = 0 if code is None else len(code.code) + len(code.model_id)
    return len(record.blob) + len(record.model_id) + len(record.producer_id) + code_bytes + 96
