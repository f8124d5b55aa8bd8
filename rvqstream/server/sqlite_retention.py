"""Retention in the SQLite channel log: per channel, remove the head of the log that is older
than the age limit or beyond the byte limit, and give the space back (incremental vacuum).

Offsets stay dense and are never reused: a channel's ``first_offset`` moves up past what was
removed. A message still streaming is never removed, nor anything after it, so the head that
goes is always a run of closed messages.
"""

from __future__ import annotations

import time

from rvqstream.server.logstore import MessageState, Retention

MAX_REMOVED = 10_000     # messages removed per channel in one write (the writer stays responsive)
VACUUM_PAGES = 4096      # pages given back to the file system after a retention write


def keep_from(conn, cid: int, first: int, end: int, retention: Retention) -> int:
    """The lowest offset channel ``cid`` keeps under ``retention`` (``first`` when it removes
    nothing): past the age and byte limits, never past a streaming message, at most
    ``MAX_REMOVED`` messages up from ``first``."""
    keep = end
    if retention.max_age_s > 0:
        cutoff = int(time.time() - retention.max_age_s)
        row = conn.execute("SELECT min(msg_offset) FROM entries WHERE channel = ? AND created_at >= ?",
                           (cid, cutoff)).fetchone()
        keep = min(keep, end if row[0] is None else row[0])
    if retention.max_bytes > 0:
        row = conn.execute(
            "SELECT min(msg_offset) FROM (SELECT msg_offset, sum(stored_bytes) OVER"
            " (ORDER BY msg_offset DESC) AS newer FROM entries WHERE channel = ?) WHERE newer <= ?",
            (cid, retention.max_bytes)).fetchone()
        keep = min(keep, end if row[0] is None else row[0])
    row = conn.execute("SELECT min(msg_offset) FROM entries WHERE channel = ? AND state = ?",
                       (cid, int(MessageState.STREAMING))).fetchone()
    if row[0] is not None:
        keep = min(keep, row[0])
    return max(first, min(keep, first + MAX_REMOVED))


def remove_below(conn, cid: int, keep: int) -> int:
    """Removes channel ``cid``'s messages (with their parts and codes) below offset ``keep`` and
    moves its first offset up to it -> messages removed."""
    removed = conn.execute("DELETE FROM entries WHERE channel = ? AND msg_offset < ?", (cid, keep)).rowcount
    conn.execute("DELETE FROM parts WHERE channel = ? AND msg_offset < ?", (cid, keep))
    conn.execute("DELETE FROM codes WHERE channel = ? AND msg_offset < ?", (cid, keep))
    conn.execute("UPDATE channels SET first_offset = max(first_offset, ?) WHERE id = ?", (keep, cid))
    return removed


def retain_tx(tx, retention: Retention) -> int:
    """Applies ``retention`` inside the writer's transaction ``tx`` -> messages removed."""
    removed = 0
    for cid, first, end in tx.conn.execute("SELECT id, first_offset, next_offset FROM channels").fetchall():
        keep = keep_from(tx.conn, cid, first, end, retention)
        if keep > first:
            removed += remove_below(tx.conn, cid, keep)
    return removed
