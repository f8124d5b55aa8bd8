"""The reference model of the channel log that the parser fuzzer's store target (bench/fuzz_store.py)
checks ``SQLiteLogStore`` against: ``RefLog`` answers what the log must answer after the writes it
acknowledged, and ``storable`` says which values SQLite can hold at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rvqstream.server.logstore import MessageState, Part, Record, Retention, StreamKey


def storable(*values) -> bool:
    """Whether SQLite can bind every value: ints in 64 bits, strings without lone surrogates."""
    for v in values:
        if isinstance(v, int) and not -(1 << 63) <= v < (1 << 63):
            return False
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


@dataclass
class RefEntry:
    model_id: str
    blob: bytes = b""
    producer: str | None = None
    sequence: int | None = None
    streamed: bool = False
    state: MessageState = MessageState.COMPLETE
    tier: int = 0
    parts: list = field(default_factory=list)
    text_bytes: int = 0
    crc: int = 0

    @property
    def stored(self) -> int:
        return sum(map(len, self.parts)) if self.streamed else len(self.blob)


@dataclass
class RefChannel:
    next: int = 0
    first: int = 0
    entries: dict = field(default_factory=dict)      # offset -> RefEntry, retained ones only

    def by_key(self, producer: str, sequence: int) -> tuple[int, RefEntry] | None:
        return next(((o, e) for o, e in self.entries.items()
                     if e.producer == producer and e.sequence == sequence), None)


class RefLog:
    """What the channel log must answer after the writes it acknowledged: logstore.py's contract
    with sqlite_store.py's choices (which values reach SQLite and in what order, so which writes
    fail on a value it cannot hold; published records without a producer are never duplicates).
    Each write -> ("ok", result), ("conflict", None) or ("unstorable", None); applied only if ok."""

    def __init__(self):
        self.channels: dict[str, RefChannel] = {}

    def append(self, channel: str, records: list[Record]):
        if not storable(channel):
            return "unstorable", None
        ch = self.channels.get(channel, RefChannel())
        new: dict[int, RefEntry] = {}
        out = []
        for rec in records:
            if rec.producer_id:
                if not storable(rec.producer_id, rec.sequence):
                    return "unstorable", None
                hit = next(((o, e) for o, e in [*ch.entries.items(), *new.items()]
                            if e.producer == rec.producer_id and e.sequence == rec.sequence), None)
                if hit is not None:
                    out.append((hit[0], True))
                    continue
            if not storable(rec.model_id):
                return "unstorable", None
            offset = ch.next + len(new)
            new[offset] = RefEntry(rec.model_id, rec.blob, rec.producer_id or None,
                                   rec.sequence if rec.producer_id else None)
            out.append((offset, False))
        self.channels[channel] = ch
        ch.entries.update(new)
        ch.next += len(new)
        return "ok", out

    def append_part(self, channel: str, key: StreamKey, part: Part):
        if not storable(channel, key.producer_id, key.sequence):
            return "unstorable", None
        ch = self.channels.get(channel, RefChannel())
        hit = ch.by_key(key.producer_id, key.sequence)
        if hit is None:
            if not storable(key.model_id, key.tier):
                return "unstorable", None
            offset, entry = ch.next, RefEntry(key.model_id, producer=key.producer_id, sequence=key.sequence,
                                              streamed=True, state=MessageState.STREAMING, tier=key.tier)
        else:
            offset, entry = hit
        if entry.state != MessageState.STREAMING or part.index != len(entry.parts):
            return "conflict", None
        if not storable(part.text_bytes, part.crc):
            return "unstorable", None
        if hit is None:
            self.channels[channel] = ch
            ch.entries[offset] = entry
            ch.next += 1
        entry.parts.append(part.batch)
        entry.text_bytes += part.text_bytes
        entry.crc = part.crc
        if part.end:
            entry.state = MessageState.COMPLETE
        return "ok", self.info(offset, entry)

    @staticmethod
    def info(offset: int, e: RefEntry) -> tuple:
        return (offset, e.state, len(e.parts), e.text_bytes, e.crc, e.model_id, e.tier, e.stored)

    def abort(self, channel: str, offset: int):
        if not storable(channel, offset):
            return "unstorable", None
        e = self.channels.get(channel, RefChannel()).entries.get(offset)
        if e is None or e.state != MessageState.STREAMING:
            return "ok", False
        e.state = MessageState.ABORTED
        return "ok", True

    def retain(self, retention: Retention):
        """sqlite_retention.py's byte rule: keep the newest messages that fit in
        ``retention.max_bytes`` (none when the newest alone does not), never a streaming one or
        anything after it."""
        max_bytes, removed = retention.max_bytes, 0
        for ch in self.channels.values():
            keep, newer = ch.next, 0
            for offset in sorted(ch.entries, reverse=True):
                newer += ch.entries[offset].stored
                if newer > max_bytes:
                    break
                keep = offset
            streaming = [o for o, e in ch.entries.items() if e.state == MessageState.STREAMING]
            keep = min([keep, *streaming])
            if keep > ch.first:
                gone = [o for o in ch.entries if o < keep]
                removed += len(gone)
                for o in gone:
                    del ch.entries[o]
                ch.first = keep
        return "ok", removed

