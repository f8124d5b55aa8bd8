"""Channel logs: the small interface the channel service needs, and its SQLite (WAL) engine.

A channel is an append-only log of compressed messages. Offsets are per channel, dense (0, 1, 2,
...) and never reused; ``append`` returns only once the entries are durable. A distributed engine
(streams with replay from a sequence, e.g. NATS JetStream) can stand behind the same interface.
"""

from __future__ import annotations

import abc
import asyncio
import queue
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """A message to append: its blob, the model that made it, and an optional dedup key."""

    blob: bytes
    model_id: str
    producer_id: str = ""
    sequence: int = 0


@dataclass(frozen=True)
class Appended:
    """Where a record went; ``duplicate``: the (producer_id, sequence) was already stored there."""

    offset: int
    duplicate: bool


@dataclass(frozen=True)
class Entry:
    """A stored message."""

    offset: int
    model_id: str
    blob: bytes


class LogStore(abc.ABC):
    """Append-only per-channel logs with durable appends and live waiting."""

    @abc.abstractmethod
    async def append(self, channel: str, records: list[Record]) -> list[Appended]:
        """Appends in order (creating the channel); returns once every record is durable."""

    @abc.abstractmethod
    async def read(self, channel: str, from_offset: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries from ``from_offset`` on, in offset order."""

    @abc.abstractmethod
    async def end_offset(self, channel: str) -> int | None:
        """The next offset the channel will assign; None for a channel that does not exist."""

    @abc.abstractmethod
    async def wait(self, channel: str, offset: int) -> None:
        """Returns once the channel holds an entry at ``offset`` (at once if it already does)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finishes pending appends and releases the store."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, model_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS entries (
    channel INTEGER NOT NULL, msg_offset INTEGER NOT NULL, model INTEGER NOT NULL,
    blob BLOB NOT NULL, producer TEXT, sequence INTEGER,
    PRIMARY KEY (channel, msg_offset)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS entries_producer
    ON entries (channel, producer, sequence) WHERE producer IS NOT NULL;
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the ack goes out
    return conn


class SQLiteLogStore(LogStore):
    """One SQLite file in WAL mode. Appends from all channels are group-committed by one writer
    thread (one fsync per batch); reads run on a small reader pool beside it."""

    MAX_GROUP = 512  # append requests committed in one transaction

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        setup = _connect(self.path)
        setup.executescript(_SCHEMA)
        setup.close()
        self._requests: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="logstore-writer", daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="logstore-reader")
        self._waiters: dict[str, list[tuple[int, asyncio.Future]]] = {}
        self._closed = False

    # -- writing ------------------------------------------------------------------------------

    async def append(self, channel: str, records: list[Record]) -> list[Appended]:
        if self._closed:
            raise RuntimeError("log store is closed")
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._requests.put((channel, records, loop, done))
        appended = await done
        self._wake(channel, appended)
        return appended

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        channel_ids: dict[str, int] = {}
        model_ids: dict[str, int] = {}
        while True:
            first = self._requests.get()
            if first is None:
                break
            group = [first]
            stop = False
            while len(group) < self.MAX_GROUP:
                try:
                    item = self._requests.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            try:
                conn.execute("BEGIN IMMEDIATE")
                results = [self._append_tx(conn, channel_ids, model_ids, ch, recs)
                           for ch, recs, _, _ in group]
                conn.execute("COMMIT")
            except Exception as e:  # noqa: BLE001 - every waiter of the failed batch gets the error
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                channel_ids.clear()
                model_ids.clear()
                for _, _, loop, fut in group:
                    loop.call_soon_threadsafe(_settle, fut, None, e)
            else:
                for (_, _, loop, fut), result in zip(group, results):
                    loop.call_soon_threadsafe(_settle, fut, result, None)
            if stop:
                break
        conn.close()

    @staticmethod
    def _append_tx(conn, channel_ids, model_ids, channel, records) -> list[Appended]:
        cid = channel_ids.get(channel)
        if cid is None:
            conn.execute("INSERT OR IGNORE INTO channels (name, next_offset) VALUES (?, 0)", (channel,))
            cid = conn.execute("SELECT id FROM channels WHERE name = ?", (channel,)).fetchone()[0]
            channel_ids[channel] = cid
        (next_offset,) = conn.execute("SELECT next_offset FROM channels WHERE id = ?", (cid,)).fetchone()
        out = []
        for rec in records:
            if rec.producer_id:
                row = conn.execute(
                    "SELECT msg_offset FROM entries WHERE channel = ? AND producer = ? AND sequence = ?",
                    (cid, rec.producer_id, rec.sequence)).fetchone()
                if row is not None:
                    out.append(Appended(row[0], True))
                    continue
            mid = model_ids.get(rec.model_id)
            if mid is None:
                conn.execute("INSERT OR IGNORE INTO models (model_id) VALUES (?)", (rec.model_id,))
                mid = conn.execute("SELECT id FROM models WHERE model_id = ?", (rec.model_id,)).fetchone()[0]
                model_ids[rec.model_id] = mid
            conn.execute(
                "INSERT INTO entries (channel, msg_offset, model, blob, producer, sequence)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (cid, next_offset, mid, rec.blob, rec.producer_id or None,
                 rec.sequence if rec.producer_id else None))
            out.append(Appended(next_offset, False))
            next_offset += 1
        conn.execute("UPDATE channels SET next_offset = ? WHERE id = ?", (next_offset, cid))
        return out

    # -- reading ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path)
            self._reader_conns.append(conn)
        return conn

    async def _query(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _read_sync(self, channel: str, from_offset: int, limit: int) -> list[Entry]:
        rows = self._reader().execute(
            "SELECT e.msg_offset, m.model_id, e.blob FROM entries e"
            " JOIN channels c ON e.channel = c.id JOIN models m ON e.model = m.id"
            " WHERE c.name = ? AND e.msg_offset >= ? ORDER BY e.msg_offset LIMIT ?",
            (channel, from_offset, limit)).fetchall()
        return [Entry(o, m, b) for o, m, b in rows]

    def _end_sync(self, channel: str) -> int | None:
        row = self._reader().execute("SELECT next_offset FROM channels WHERE name = ?",
                                     (channel,)).fetchone()
        return None if row is None else row[0]

    async def read(self, channel: str, from_offset: int, limit: int) -> list[Entry]:
        return await self._query(self._read_sync, channel, from_offset, limit)

    async def end_offset(self, channel: str) -> int | None:
        return await self._query(self._end_sync, channel)

    # -- live waiting -------------------------------------------------------------------------

    async def wait(self, channel: str, offset: int) -> None:
        fut = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(channel, [])
        waiters.append((offset, fut))
        try:
            end = await self.end_offset(channel)
            if end is not None and end > offset:
                return
            await fut
        finally:
            if (offset, fut) in waiters:
                waiters.remove((offset, fut))

    def _wake(self, channel: str, appended: list[Appended]) -> None:
        if not appended:
            return
        top = max(a.offset for a in appended)
        for offset, fut in list(self._waiters.get(channel, ())):
            if offset <= top and not fut.done():
                fut.set_result(None)

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
