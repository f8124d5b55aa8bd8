"""The SQLite channel log's schema, its migrations, and how its connections are opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
CREATE TABLE IF NOT EXISTS parts (
    channel INTEGER NOT NULL, msg_offset INTEGER NOT NULL, part INTEGER NOT NULL, batch BLOB NOT NULL,
    PRIMARY KEY (channel, msg_offset, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS codes (
    channel INTEGER NOT NULL, msg_offset INTEGER NOT NULL, model INTEGER NOT NULL, code BLOB NOT NULL,
    near_of INTEGER, PRIMARY KEY (channel, msg_offset)) WITHOUT ROWID;
"""
# columns of streamed messages, added to logs made before streams existed
_STREAM_COLUMNS = {
    "state": "INTEGER NOT NULL DEFAULT 1", "streamed": "INTEGER NOT NULL DEFAULT 0",
    "tier": "INTEGER NOT NULL DEFAULT 0", "parts": "INTEGER NOT NULL DEFAULT 0",
    "text_bytes": "INTEGER NOT NULL DEFAULT 0", "crc": "INTEGER NOT NULL DEFAULT 0",
    "stored_bytes": "INTEGER NOT NULL DEFAULT 0", "created_at": "INTEGER NOT NULL DEFAULT 0",
}


def connect(path: Path, max_bytes: int = 0, durable: bool = True) -> sqlite3.Connection:
    """A connection in WAL mode with full sync (``durable``: a commit is on disk before the ack goes
    out; off for a log that is a rebuildable view); ``max_bytes`` caps the file (writes past it
    fail with SQLITE_FULL, as on a full disk)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    if max_bytes:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
    return conn


def full(error: Exception) -> bool:
    """Whether ``error`` is SQLite's "database or disk is full"."""
    return isinstance(error, sqlite3.Error) and "full" in str(error).lower()


def migrate(path: Path) -> None:
    """Creates the log at ``path`` or brings an older one up to this schema."""
    if not path.exists():      # a new log gives space back: set before the file takes its first page
        sqlite3.connect(path).execute("PRAGMA auto_vacuum = INCREMENTAL").connection.close()
    setup = connect(path)
    setup.executescript(_SCHEMA)
    have = {row[1] for row in setup.execute("PRAGMA table_info(entries)")}
    for name, decl in _STREAM_COLUMNS.items():
        if name not in have:
            setup.execute(f"ALTER TABLE entries ADD COLUMN {name} {decl}")
            if name == "created_at":    # messages of older logs count from now
                setup.execute("UPDATE entries SET created_at = CAST(strftime('%s', 'now') AS INTEGER)")
    if "first_offset" not in {row[1] for row in setup.execute("PRAGMA table_info(channels)")}:
        setup.execute("ALTER TABLE channels ADD COLUMN first_offset INTEGER NOT NULL DEFAULT 0")
    setup.close()
