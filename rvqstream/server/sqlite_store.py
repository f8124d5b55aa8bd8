"""The embedded channel log engine: one SQLite file in WAL mode (the default ``LogStore``).

All writes, from every channel, go through one writer thread that group-commits them (one fsync
per group); each write runs in its own savepoint, so a bad one fails alone and the rest of its
group commits. After each commit the writer itself wakes the channels' live readers and hands
the new batches to a small in-memory cache of recent parts; it also notes each channel's end
offset, so that live followers learn of new batches, and find no new message, without a query.
Reads run on a small reader pool beside the writer. Schema: sqlite_schema.py; the writes:
sqlite_writes.py; retention: sqlite_retention.py.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rvqstream.server.logstore import (
    Appended,
    Code,
    CodeEntry,
    Entry,
    LogFull,
    LogStore,
    MessageState,
    Part,
    Record,
    Retention,
    StreamInfo,
    StreamKey,
)
from rvqstream.server.sqlite_retention import VACUUM_PAGES, keep_from, retain_tx
from rvqstream.server.sqlite_schema import connect, full, migrate
from rvqstream.server.sqlite_writes import (
    STREAM_SELECT,
    Tx,
    abort_tx,
    append_tx,
    part_tx,
    retain_below_tx,
    stream_info,
)

RECENT_PARTS = 4096      # batches kept in memory for live followers, over all channels ...
RECENT_BYTES = 16 << 20  # ... and their bytes at most


class SQLiteLogStore(LogStore):
    """One SQLite file in WAL mode; see the module docstring."""

    MAX_GROUP = 512  # write requests committed in one transaction

    def __init__(self, path: Path | str, max_bytes: int = 0, durable: bool = True):
        """``max_bytes``: the most the log file may grow to (0: the disk's size); ``durable``: each
        write is on disk before it returns (off for a view rebuilt from another log: nats_log.py)."""
        self.path, self.max_bytes, self.durable = Path(path), max_bytes, durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        migrate(self.path)
        self._requests: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="logstore-writer", daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="logstore-reader")
        self._versions: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._recent: OrderedDict[tuple[str, int, int], tuple[bytes, bool]] = OrderedDict()
        self._recent_bytes = 0
        # end offsets of the channels written since this store opened, set by the writer thread
        self._ends: dict[str, int] = {}
        self._closed = False

    # -- writing ------------------------------------------------------------------------------

    async def _write(self, fn, *args):
        if self._closed:
            raise RuntimeError("log store is closed")
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._requests.put((fn, args, loop, done))
        return await done

    async def append(self, channel: str, records: list[Record], *, at: int | None = None,
                     created_at: int | None = None) -> list[Appended]:
        """As ``LogStore.append``; for a log that follows another (nats_fold.py): ``at``, the
        offset the first record takes, as the log it follows says (records are stored as they
        are, no duplicate check: ``Tx.channel_at``), and ``created_at``, when the messages were
        created (Unix seconds; default now: what age retention counts from)."""
        return await self._write(append_tx, channel, records, at, created_at)

    async def append_part(self, channel: str, key: StreamKey, part: Part, *, at: int | None = None,
                          create: bool = True, created_at: int | None = None) -> StreamInfo:
        """As ``LogStore.append_part``; for a follower: ``at``, the offset of the message this part
        creates (it must not exist), ``create`` false: a message the channel does not hold is a
        ``PartConflict``, ``created_at`` as in ``append``."""
        return await self._write(part_tx, channel, key, part, at, create, created_at)

    async def retain_below(self, channel: str, offset: int) -> int:
        """Removes the channel's messages below ``offset`` (its first offset moves up to it) ->
        messages removed; for a log that follows another log's retention (nats_fold.py)."""
        return await self._write(retain_below_tx, channel, offset)

    async def abort(self, channel: str, offset: int, code: Code | None = None) -> bool:
        return await self._write(abort_tx, channel, offset, code)

    async def retain(self, retention: Retention) -> int:
        if not retention.enabled:
            return 0
        return await self._write(retain_tx, retention)

    def _write_loop(self) -> None:
        tx = Tx(connect(self.path, self.max_bytes, self.durable))
        while True:
            first = self._requests.get()
            if first is None:
                break
            group, stop = [first], False
            while len(group) < self.MAX_GROUP:
                try:
                    item = self._requests.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit(tx, group)
            if any(item[0] in (retain_tx, retain_below_tx) for item in group):
                tx.conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")   # runs all its steps
            if stop:
                break
        tx.conn.close()

    def _commit(self, tx: Tx, group: list) -> None:
        """Runs a group of writes in one transaction, each in its own savepoint, then settles them
        and wakes the channels they changed."""
        results: list[tuple] = []
        changes: dict[str, list[tuple[int, int, bytes, bool]]] = {}
        ends: dict[str, int] = {}
        conn = tx.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, args, _, _ in group:
                conn.execute("SAVEPOINT w")
                try:
                    result = fn(tx, *args)
                except Exception as e:  # this write fails alone
                    if full(e):
                        raise        # SQLite may have rolled the whole transaction back
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    tx.forget()
                    results.append((None, e))
                    continue
                conn.execute("RELEASE w")
                results.append((result, None))
                if fn is retain_tx:
                    continue
                channel = args[0]
                parts = changes.setdefault(channel, [])
                if fn == part_tx:
                    parts.append((result.offset, result.parts - 1, args[2].batch, args[2].end))
                if fn not in (abort_tx, retain_below_tx):   # they create no channel
                    ends[channel] = tx.end(channel)
            # before the commit: a reader may find the end ahead of the log (and then query it),
            # never behind it
            self._ends.update(ends)
            conn.execute("COMMIT")
        except Exception as e:  # noqa: BLE001 - the commit failed: every write of the group fails
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            tx.forget()
            if full(e):
                e = LogFull(f"the channel log is full ({e})")
            results, changes = [(None, e)] * len(group), {}
        for (_, _, loop, fut), (result, error) in zip(group, results):
            loop.call_soon_threadsafe(_settle, fut, result, error)
        if changes:
            group[0][2].call_soon_threadsafe(self._committed, changes)

    def _committed(self, changes: dict[str, list[tuple[int, int, bytes, bool]]]) -> None:
        """On the event loop, after a commit: cache the new batches, wake the channels' readers."""
        for channel, parts in changes.items():
            for offset, index, batch, end in parts:
                self._recent[(channel, offset, index)] = (batch, end)
                self._recent_bytes += len(batch)
            self._versions[channel] = self._versions.get(channel, 0) + 1
            event = self._changed.pop(channel, None)
            if event is not None:
                event.set()
        while len(self._recent) > RECENT_PARTS or self._recent_bytes > RECENT_BYTES:
            self._recent_bytes -= len(self._recent.popitem(last=False)[1][0])

    # -- reading ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            self._reader_conns.append(conn)
        return conn

    async def _query(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _read_sync(self, channel: str, from_offset: int, limit: int, limit_bytes: int) -> list[Entry]:
        rows = self._reader().execute(
            "SELECT e.msg_offset, m.model_id, e.blob, e.state, e.streamed, e.tier, e.parts FROM entries e"
            " JOIN channels c ON e.channel = c.id JOIN models m ON e.model = m.id"
            " WHERE c.name = ? AND e.msg_offset >= ? ORDER BY e.msg_offset LIMIT ?",
            (channel, from_offset, limit))
        out, size = [], 0
        for o, m, b, s, st, t, p in rows:      # rows are fetched as the loop goes
            if out and size + len(b) > limit_bytes:
                break
            out.append(Entry(o, m, b, MessageState(s), bool(st), t, p))
            size += len(b)
        rows.close()
        return out

    def _codes_sync(self, channel: str, from_offset: int, limit: int) -> list[CodeEntry]:
        rows = self._reader().execute(
            "SELECT e.msg_offset, e.state, c.code, m.model_id, c.near_of FROM entries e"
            " JOIN channels ch ON e.channel = ch.id LEFT JOIN codes c"
            " ON c.channel = e.channel AND c.msg_offset = e.msg_offset LEFT JOIN models m ON c.model = m.id"
            " WHERE ch.name = ? AND e.msg_offset >= ? ORDER BY e.msg_offset LIMIT ?",
            (channel, from_offset, limit)).fetchall()
        return [CodeEntry(o, MessageState(s), None if code is None else Code(m, code, near))
                for o, s, code, m, near in rows]

    def _first_sync(self, channel: str) -> int:
        row = self._reader().execute("SELECT first_offset FROM channels WHERE name = ?", (channel,)).fetchone()
        return 0 if row is None else row[0]

    def _parts_sync(self, channel: str, offset: int, from_part: int,
                    limit_bytes: int) -> tuple[list[bytes], MessageState]:
        conn = self._reader()
        conn.execute("BEGIN")    # the parts and the state from one snapshot
        try:
            rows = conn.execute(
                "SELECT p.batch FROM parts p JOIN channels c ON p.channel = c.id"
                " WHERE c.name = ? AND p.msg_offset = ? AND p.part >= ? ORDER BY p.part",
                (channel, offset, from_part))
            out, size, more = [], 0, False
            for (batch,) in rows:
                if out and size + len(batch) > limit_bytes:
                    more = True
                    break
                out.append(batch)
                size += len(batch)
            state = MessageState.STREAMING if more else self._state_sync(channel, offset)[0]
        finally:
            conn.execute("COMMIT")
        return out, state

    def _find_sync(self, channel: str, producer_id: str, sequence: int) -> StreamInfo | None:
        row = self._reader().execute(
            STREAM_SELECT + " JOIN channels c ON e.channel = c.id"
            " WHERE c.name = ? AND e.producer = ? AND e.sequence = ? AND e.streamed = 1",
            (channel, producer_id, sequence)).fetchone()
        return None if row is None else stream_info(row)

    def _state_sync(self, channel: str, offset: int) -> tuple[MessageState, int]:
        row = self._reader().execute(
            "SELECT e.state, e.parts FROM entries e JOIN channels c ON e.channel = c.id"
            " WHERE c.name = ? AND e.msg_offset = ?", (channel, offset)).fetchone()
        if row is None:
            raise KeyError(f"channel {channel!r} has no message {offset}")
        return MessageState(row[0]), row[1]

    def _open_sync(self) -> list[tuple[str, int]]:
        return self._reader().execute(
            "SELECT c.name, e.msg_offset FROM entries e JOIN channels c ON e.channel = c.id"
            " WHERE e.state = ?", (int(MessageState.STREAMING),)).fetchall()

    def _end_sync(self, channel: str) -> int | None:
        row = self._reader().execute("SELECT next_offset FROM channels WHERE name = ?",
                                     (channel,)).fetchone()
        return None if row is None else row[0]

    async def read(self, channel: str, from_offset: int, limit: int, limit_bytes: int) -> list[Entry]:
        if from_offset >= self._ends.get(channel, from_offset + 1):   # this writer knows: nothing new
            return []
        return await self._query(self._read_sync, channel, from_offset, limit, limit_bytes)

    async def read_codes(self, channel: str, from_offset: int, limit: int) -> list[CodeEntry]:
        return await self._query(self._codes_sync, channel, from_offset, limit)

    async def first_offset(self, channel: str) -> int:
        return await self._query(self._first_sync, channel)

    async def read_parts(self, channel: str, offset: int, from_part: int,
                         limit_bytes: int) -> tuple[list[bytes], MessageState]:
        out, size, end = [], 0, False
        while not end and (hit := self._recent.get((channel, offset, from_part + len(out)))) is not None:
            batch, end = hit
            if out and size + len(batch) > limit_bytes:
                return out, MessageState.STREAMING
            out.append(batch)
            size += len(batch)
        if out:     # from the cache: later parts, or a later abort, show on the next read
            return out, MessageState.COMPLETE if end else MessageState.STREAMING
        return await self._query(self._parts_sync, channel, offset, from_part, limit_bytes)

    async def find_stream(self, channel: str, producer_id: str, sequence: int) -> StreamInfo | None:
        return await self._query(self._find_sync, channel, producer_id, sequence)

    async def find_keys(self, channel: str, keys: list[tuple[str, int]]) -> dict[tuple[str, int], StreamInfo]:
        """The messages, published or streamed, that hold these (producer id, sequence) keys."""
        return await self._query(self._keys_sync, channel, keys)

    def _keys_sync(self, channel: str, keys: list[tuple[str, int]]) -> dict[tuple[str, int], StreamInfo]:
        conn, out = self._reader(), {}
        for producer, sequence in keys:
            row = conn.execute(STREAM_SELECT + " JOIN channels c ON e.channel = c.id"
                               " WHERE c.name = ? AND e.producer = ? AND e.sequence = ?",
                               (channel, producer, sequence)).fetchone()
            if row is not None:
                out[(producer, sequence)] = stream_info(row)
        return out

    async def retention_points(self, retention: Retention) -> dict[str, tuple[int, int]]:
        """Per channel that ``retention`` would shorten: (its first offset, the first it would keep);
        nothing is removed (a log that follows another's retention asks, then tells the other)."""
        return await self._query(self._points_sync, retention)

    def _points_sync(self, retention: Retention) -> dict[str, tuple[int, int]]:
        conn, out = self._reader(), {}
        for cid, name, first, end in conn.execute(
                "SELECT id, name, first_offset, next_offset FROM channels").fetchall():
            keep = keep_from(conn, cid, first, end, retention)
            if keep > first:
                out[name] = (first, keep)
        return out

    async def stream_state(self, channel: str, offset: int) -> tuple[MessageState, int]:
        return await self._query(self._state_sync, channel, offset)

    async def open_streams(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in await self._query(self._open_sync)]

    async def end_offset(self, channel: str) -> int | None:
        return await self._query(self._end_sync, channel)

    # -- live waiting -------------------------------------------------------------------------

    def version(self, channel: str) -> int:
        return self._versions.get(channel, 0)

    async def wait_change(self, channel: str, version: int) -> None:
        while self._versions.get(channel, 0) == version:
            event = self._changed.get(channel)
            if event is None:
                event = self._changed[channel] = asyncio.Event()
            await event.wait()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        await asyncio.to_thread(self._writer.join)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()


def _settle(fut: asyncio.Future, result, error) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
