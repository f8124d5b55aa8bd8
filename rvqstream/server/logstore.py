"""Channel logs: the interface the channel service needs (its engines: sqlite_store.py, the
embedded default, and nats_log.py, NATS JetStream shared by several server replicas).

A channel is an append-only log of messages. Offsets are per channel, dense (0, 1, 2, ...) and
never reused; retention removes messages from a channel's head only (``first_offset`` moves up).
A message is either published whole (one blob) or streamed: a producer appends
frame batches ("parts") to it as it writes, and it ends complete or aborted. Writes return only
once they are durable, and every durable change wakes the channel's live readers (the engine
wakes them itself, so a change whose writer went away still wakes them). A shared engine
(``shared``) is written by other server processes too: a streaming message may have its writer
in another process, which keeps it alive with ``touch``.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass


class MessageState(enum.IntEnum):
    """Where a message stands (the values are stored)."""

    COMPLETE = 1      # all its text is in the log
    STREAMING = 2     # a producer is still writing it
    ABORTED = 3       # closed before its end; holds the text that was made durable


@dataclass(frozen=True)
class Code:
    """A message's semantic code: the code model that made it (``model_id``), ``code`` (one byte a
    stage) and, for a near-duplicate, what it repeats: ``near_of``, an earlier message's offset, or
    ``near_record``, the index of an earlier record of the same ``append`` call."""

    model_id: str
    code: bytes
    near_of: int | None = None
    near_record: int | None = None


@dataclass(frozen=True)
class CodeEntry:
    """A message as a code reader sees it: its offset, state and code (None: none, yet or ever)."""

    offset: int
    state: MessageState
    code: Code | None


@dataclass(frozen=True)
class Record:
    """A whole message to append: its blob, the model that made it, an optional dedup key and its
    semantic code."""

    blob: bytes
    model_id: str
    producer_id: str = ""
    sequence: int = 0
    code: Code | None = None


@dataclass(frozen=True)
class Appended:
    """Where a record went; ``duplicate``: the (producer_id, sequence) was already stored there."""

    offset: int
    duplicate: bool


@dataclass(frozen=True)
class StreamKey:
    """Names a streamed message by its producer; the fields after ``sequence`` are what a new
    message is created with (``tier``: the wire's Tier number)."""

    producer_id: str
    sequence: int
    model_id: str
    tier: int


@dataclass(frozen=True)
class Part:
    """A frame batch to append to a streamed message: ``index`` is the part number the writer
    expects it to get (a conflict otherwise), ``text_bytes`` the UTF-8 bytes of text it carries,
    ``crc`` the message's running check value after it, ``end`` whether it ends the message,
    ``code`` the message's semantic code (stored with the part that ends it)."""

    index: int
    batch: bytes
    text_bytes: int
    crc: int
    end: bool
    code: Code | None = None


@dataclass(frozen=True)
class StreamInfo:
    """A streamed message: its offset, state, parts so far, UTF-8 bytes of text durable, running
    check value, and the model and tier it is coded with."""

    offset: int
    state: MessageState
    parts: int
    text_bytes: int
    crc: int
    model_id: str
    tier: int
    stored_bytes: int = 0


@dataclass(frozen=True)
class Entry:
    """A stored message. Published: ``blob``; streamed: ``streamed``, with ``parts`` batches so far."""

    offset: int
    model_id: str
    blob: bytes
    state: MessageState = MessageState.COMPLETE
    streamed: bool = False
    tier: int = 0
    parts: int = 0


class PartConflict(Exception):
    """A part was appended at an index the message has already passed, or to a closed message."""


class LogFull(Exception):
    """The log cannot take the write: its disk or its size limit is full."""


class LogUnavailable(Exception):
    """The log cannot be reached now (a distributed engine lost its cluster); the write may be
    retried."""


@dataclass(frozen=True)
class Retention:
    """Per-channel retention: messages older than ``max_age_s`` seconds, and the oldest beyond
    ``max_bytes`` of stored bytes, are removed (0: no limit). A streaming message is never removed,
    and so neither is any message after it until it closes."""

    max_age_s: float = 0.0
    max_bytes: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0 or self.max_bytes > 0


class LogStore(abc.ABC):
    """Append-only per-channel logs with durable writes and live waiting."""

    shared = False   # other server processes write the same log

    async def start(self) -> None:
        """Connects to the engine and catches up with it (nothing to do for an embedded one)."""

    async def touch(self, channel: str, offset: int) -> None:
        """Tells the other writers of a shared log that this process still writes the streaming
        message at ``offset`` (nothing to do when the log is not shared)."""

    def idle_s(self, channel: str, offset: int) -> float | None:
        """Seconds since any process last wrote or touched the streaming message at ``offset``;
        None when the log is not shared (then only this process writes it)."""
        return None

    @abc.abstractmethod
    async def append(self, channel: str, records: list[Record]) -> list[Appended]:
        """Appends whole messages in order (creating the channel); returns once all are durable.
        ``LogFull`` when the log cannot grow."""

    @abc.abstractmethod
    async def append_part(self, channel: str, key: StreamKey, part: Part) -> StreamInfo:
        """Appends a batch to the streamed message ``key`` names, creating it (and the channel) at
        the next offset when the channel does not hold it yet; returns once it is durable.
        ``PartConflict`` when the message is closed or past ``part.index``."""

    @abc.abstractmethod
    async def find_stream(self, channel: str, producer_id: str, sequence: int) -> StreamInfo | None:
        """The streamed message of (producer_id, sequence), or None."""

    @abc.abstractmethod
    async def abort(self, channel: str, offset: int, code: Code | None = None) -> bool:
        """Closes a streaming message as aborted, with its ``code`` if given; False when it was not
        streaming (then nothing changes)."""

    @abc.abstractmethod
    async def open_streams(self) -> list[tuple[str, int]]:
        """(channel, offset) of every message still streaming."""

    @abc.abstractmethod
    async def read(self, channel: str, from_offset: int, limit: int, limit_bytes: int) -> list[Entry]:
        """Entries from ``from_offset`` on, in offset order: at least one when there is one, then
        as many as fit in ``limit`` entries and ``limit_bytes`` bytes of blobs."""

    @abc.abstractmethod
    async def read_codes(self, channel: str, from_offset: int, limit: int) -> list[CodeEntry]:
        """Up to ``limit`` messages from ``from_offset`` on, in offset order, with their codes."""

    @abc.abstractmethod
    async def first_offset(self, channel: str) -> int:
        """The channel's lowest offset that retention has not removed (0 when it removed none)."""

    @abc.abstractmethod
    async def retain(self, retention: Retention) -> int:
        """Applies ``retention`` to every channel -> the number of messages removed."""

    @abc.abstractmethod
    async def read_parts(self, channel: str, offset: int, from_part: int,
                         limit_bytes: int) -> tuple[list[bytes], MessageState]:
        """Batches of a streamed message from part ``from_part`` on (at least one when there is
        one, then as many as fit in ``limit_bytes``), and its state: COMPLETE or ABORTED only
        when no part after these exists."""

    @abc.abstractmethod
    async def stream_state(self, channel: str, offset: int) -> tuple[MessageState, int]:
        """(state, parts) of the message at ``offset``."""

    @abc.abstractmethod
    async def end_offset(self, channel: str) -> int | None:
        """The next offset the channel will assign; None for a channel that does not exist."""

    async def settled_end_offset(self, channel: str) -> int | None:
        """``end_offset`` once every write acknowledged before this call is readable here (on a
        shared log, after catching up with the other writers), for checking a client's offset."""
        return await self.end_offset(channel)

    @abc.abstractmethod
    def version(self, channel: str) -> int:
        """A number that grows with every durable change to the channel (in this process)."""

    @abc.abstractmethod
    async def wait_change(self, channel: str, version: int) -> None:
        """Returns once ``version(channel)`` differs from ``version``."""

    async def all_parts(self, channel: str, offset: int) -> tuple[list[bytes], MessageState]:
        """Every batch of a streamed message as of one moment, and its state then."""
        state, parts = await self.stream_state(channel, offset)
        out: list[bytes] = []
        while len(out) < parts:
            batches, _ = await self.read_parts(channel, offset, len(out), 1 << 20)
            if not batches:
                break
            out += batches
        return out[:parts], state

    async def wait(self, channel: str, offset: int) -> None:
        """Returns once the channel holds an entry at ``offset`` (at once if it already does)."""
        while True:
            v = self.version(channel)
            end = await self.end_offset(channel)
            if end is not None and end > offset:
                return
            await self.wait_change(channel, v)

    @abc.abstractmethod
    async def close(self) -> None:
        """Finishes pending writes and releases the store."""
