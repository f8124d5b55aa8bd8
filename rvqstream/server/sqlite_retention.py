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


def retain_tx(tx, retention: Retention) -> int:
    """Applies ``retention`` inside the writer's transaction ``tx`` -> messages removed."""
    conn, removed = tx.conn, 0
    for cid, first, end in conn.execute("SELECT id, first_offset, next_offset FROM channels").fetchall():
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
        keep = min(keep, first + MAX_REMOVED)
        if keep <= first:
            continue
        cur = conn.execute("DELETE FROM entries WHERE channel = ? AND msg_offset < ?", (cid, keep))
        removed += cur.rowcount
        conn.execute("DELETE FROM parts WHERE channel = ? AND msg_offset < ?", (cid, keep))
        conn.execute("DELETE FROM codes WHERE channel = ? AND msg_offset < ?", (cid, keep))
        conn.execute("UPDATE channels SET first_offset = ? WHERE id = ?", (keep, cid))
    return removed
