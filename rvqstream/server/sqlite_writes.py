"""The SQLite channel log's writes: each runs inside the writer thread's group transaction
(sqlite_store.py), in its own savepoint. A write that raises fails alone."""

from __future__ import annotations

import sqlite3

from rvqstream.server.logstore import (
    Appended,
    Code,
    MessageState,
    Part,
    PartConflict,
    Record,
    StreamInfo,
    StreamKey,
)
from rvqstream.server.sqlite_retention import remove_below

STREAM_SELECT = ("SELECT e.msg_offset, e.state, e.parts, e.text_bytes, e.crc, m.model_id, e.tier,"
                 " e.stored_bytes FROM entries e JOIN models m ON e.model = m.id")


def stream_info(row) -> StreamInfo:
    """A row of ``STREAM_SELECT`` as a ``StreamInfo``."""
    offset, state, parts, text_bytes, crc, model_id, tier, stored = row
    return StreamInfo(offset, MessageState(state), parts, text_bytes, crc, model_id, tier, stored)


class LogDiverged(Exception):
    """A log that follows another (nats_fold.py) was told of a message at an offset its own state
    puts elsewhere: it no longer agrees with the log it follows."""


class Tx:
    """The writer's view of one transaction: cached channel and model row ids."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.channel_ids: dict[str, int] = {}
        self.model_ids: dict[str, int] = {}

    def forget(self) -> None:
        self.channel_ids.clear()
        self.model_ids.clear()

    def channel(self, name: str, start: int = 0) -> int:
        """The channel's row id; a channel this creates starts at offset ``start``."""
        cid = self.channel_ids.get(name)
        if cid is None:
            self.conn.execute("INSERT OR IGNORE INTO channels (name, next_offset, first_offset) VALUES (?, ?, ?)",
                              (name, start, start))
            cid = self.conn.execute("SELECT id FROM channels WHERE name = ?", (name,)).fetchone()[0]
            self.channel_ids[name] = cid
        return cid

    def model(self, model_id: str) -> int:
        mid = self.model_ids.get(model_id)
        if mid is None:
            self.conn.execute("INSERT OR IGNORE INTO models (model_id) VALUES (?)", (model_id,))
            mid = self.conn.execute("SELECT id FROM models WHERE model_id = ?", (model_id,)).fetchone()[0]
            self.model_ids[model_id] = mid
        return mid

    def end(self, name: str) -> int:
        """The channel's next offset, inside the transaction."""
        return self.conn.execute("SELECT next_offset FROM channels WHERE id = ?", (self.channel(name),)).fetchone()[0]

    def channel_at(self, name: str, at: int) -> int:
        """The channel's row id, its next offset made ``at``: a channel this creates starts there;
        one behind it (the log it follows dropped the messages in between: retention) loses its
        messages below ``at``; ``LogDiverged`` for one ahead of it."""
        cid = self.channel(name, at)
        (end,) = self.conn.execute("SELECT next_offset FROM channels WHERE id = ?", (cid,)).fetchone()
        if end > at:
            raise LogDiverged(f"channel {name!r} is told of a message at offset {at}; it is at {end}")
        if end < at:
            remove_below(self.conn, cid, at)
            self.conn.execute("UPDATE channels SET next_offset = ? WHERE id = ?", (at, cid))
        return cid

    def take_offset(self, cid: int) -> int:
        """The channel's next offset, taken."""
        (offset,) = self.conn.execute("SELECT next_offset FROM channels WHERE id = ?", (cid,)).fetchone()
        self.conn.execute("UPDATE channels SET next_offset = ? WHERE id = ?", (offset + 1, cid))
        return offset


def code_tx(tx: Tx, cid: int, offset: int, code: Code, near_of: int | None) -> None:
    """Stores the code of message ``offset`` of channel ``cid``."""
    tx.conn.execute("INSERT OR REPLACE INTO codes (channel, msg_offset, model, code, near_of)"
                    " VALUES (?, ?, ?, ?, ?)", (cid, offset, tx.model(code.model_id), code.code, near_of))


def append_tx(tx: Tx, channel: str, records: list[Record], at: int | None,
              created_at: int | None) -> list[Appended]:
    """``LogStore.append`` (``SQLiteLogStore.append`` for ``at`` and ``created_at``)."""
    cid = tx.channel(channel) if at is None else tx.channel_at(channel, at)
    out: list[Appended] = []
    for rec in records:
        if rec.producer_id and at is None:
            row = tx.conn.execute(
                "SELECT msg_offset FROM entries WHERE channel = ? AND producer = ? AND sequence = ?",
                (cid, rec.producer_id, rec.sequence)).fetchone()
            if row is not None:
                out.append(Appended(row[0], True))
                continue
        offset = tx.take_offset(cid)
        try:
            tx.conn.execute(
                "INSERT INTO entries (channel, msg_offset, model, blob, producer, sequence, stored_bytes,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, coalesce(?, CAST(strftime('%s', 'now') AS INTEGER)))",
                (cid, offset, tx.model(rec.model_id), rec.blob, rec.producer_id or None,
                 rec.sequence if rec.producer_id else None, len(rec.blob), created_at))
        except sqlite3.IntegrityError:   # only a follower, told of a key it holds already
            raise LogDiverged(f"channel {channel!r}: ({rec.producer_id}, {rec.sequence}) is stored twice") from None
        if rec.code is not None:
            near = rec.code.near_of if rec.code.near_record is None else out[rec.code.near_record].offset
            code_tx(tx, cid, offset, rec.code, near)
        out.append(Appended(offset, False))
    return out


def part_tx(tx: Tx, channel: str, key: StreamKey, part: Part, at: int | None, create: bool,
            created_at: int | None) -> StreamInfo:
    """``LogStore.append_part`` (``SQLiteLogStore.append_part`` for the keywords)."""
    cid = tx.channel(channel) if at is None else tx.channel_at(channel, at)
    row = tx.conn.execute(STREAM_SELECT + " WHERE e.channel = ? AND e.producer = ? AND e.sequence = ?",
                          (cid, key.producer_id, key.sequence)).fetchone()
    if row is not None and at is not None:
        raise LogDiverged(f"channel {channel!r}: message ({key.producer_id}, {key.sequence}) is created twice")
    if row is None and not create:
        raise PartConflict(f"the channel holds no message ({key.producer_id}, {key.sequence})")
    if row is None:
        offset = tx.take_offset(cid)
        tx.conn.execute(
            "INSERT INTO entries (channel, msg_offset, model, blob, producer, sequence, state, streamed,"
            " tier, created_at) VALUES (?, ?, ?, x'', ?, ?, ?, 1, ?,"
            " coalesce(?, CAST(strftime('%s', 'now') AS INTEGER)))",
            (cid, offset, tx.model(key.model_id), key.producer_id, key.sequence,
             int(MessageState.STREAMING), key.tier, created_at))
        info = StreamInfo(offset, MessageState.STREAMING, 0, 0, 0, key.model_id, key.tier)
    else:
        info = stream_info(row)
    if info.state != MessageState.STREAMING:
        raise PartConflict(f"message {info.offset} is {info.state.name.lower()}: it takes no more text")
    if part.index != info.parts:
        raise PartConflict(f"message {info.offset} has {info.parts} parts; a writer sent part {part.index}")
    tx.conn.execute("INSERT INTO parts (channel, msg_offset, part, batch) VALUES (?, ?, ?, ?)",
                    (cid, info.offset, info.parts, part.batch))
    state = MessageState.COMPLETE if part.end else MessageState.STREAMING
    tx.conn.execute(
        "UPDATE entries SET parts = parts + 1, text_bytes = text_bytes + ?, crc = ?, state = ?,"
        " stored_bytes = stored_bytes + ? WHERE channel = ? AND msg_offset = ?",
        (part.text_bytes, part.crc, int(state), len(part.batch), cid, info.offset))
    if part.code is not None:
        code_tx(tx, cid, info.offset, part.code, part.code.near_of)
    return StreamInfo(info.offset, state, info.parts + 1, info.text_bytes + part.text_bytes, part.crc,
                      info.model_id, info.tier, info.stored_bytes + len(part.batch))


def retain_below_tx(tx: Tx, channel: str, offset: int) -> int:
    """``SQLiteLogStore.retain_below``."""
    row = tx.conn.execute("SELECT id, first_offset FROM channels WHERE name = ?", (channel,)).fetchone()
    if row is None or offset <= row[1]:
        return 0
    return remove_below(tx.conn, row[0], offset)


def abort_tx(tx: Tx, channel: str, offset: int, code: Code | None) -> bool:
    """``LogStore.abort``."""
    cur = tx.conn.execute(
        "UPDATE entries SET state = ? WHERE state = ? AND msg_offset = ?"
        " AND channel = (SELECT id FROM channels WHERE name = ?)",
        (int(MessageState.ABORTED), int(MessageState.STREAMING), offset, channel))
    if cur.rowcount > 0 and code is not None:
        code_tx(tx, tx.channel(channel), offset, code, code.near_of)
    return cur.rowcount > 0
