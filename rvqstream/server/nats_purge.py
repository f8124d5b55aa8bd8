"""JetStream's share of retention on the channel log (nats_log.py): once every replica removes a
channel's messages below an offset (a ``LogRetain`` event), the events only those messages need are
purged from the stream.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from rvqstream._proto import log_pb2
from rvqstream.server.nats_events import Layout


async def purge_removed(js: JetStreamContext, layout: Layout, stream: str, channel: str, keep: int,
                        before: int) -> None:
    """Purges the channel's events that only messages below ``keep`` need: both its subjects up to
    the last message-creating event before sequence ``before`` whose first offset is at most
    ``keep`` (every creating event before that one made only messages below its first offset, and
    every other event before it is about one of those)."""
    new = layout.subject(channel, True)
    lo, hi, cut = 1, before - 1, None
    while lo <= hi:                      # creating events' first offsets grow with the sequence
        mid = (lo + hi) // 2
        found = await _creation_from(js, stream, new, mid, hi)
        if found is None:
            hi = mid - 1
        elif found[1] <= keep:
            cut, lo = found[0], found[0] + 1
        else:
            hi = mid - 1
    if cut is not None:
        await js.purge_stream(stream, subject=new, seq=cut)
        await js.purge_stream(stream, subject=layout.subject(channel, False), seq=cut)


async def _creation_from(js: JetStreamContext, stream: str, subject: str, seq: int,
                         last: int) -> tuple[int, int] | None:
    """(sequence, first offset) of the first message-creating event on ``subject`` from ``seq`` to
    ``last``, or None."""
    while seq <= last:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return None
        if msg.seq > last:
            return None
        event = log_pb2.LogEvent.FromString(msg.data)
        kind = event.WhichOneof("event")
        if kind == "append":
            return msg.seq, event.append.first_offset
        if kind == "part":
            return msg.seq, event.part.offset
        seq = msg.seq + 1                # a LogRetain: it made no message
    return None
