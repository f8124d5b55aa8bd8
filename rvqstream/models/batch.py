"""Frame batches: the byte format of live code streams (encode and decode streams, and the
streamed messages of channels). Specified in ``docs/formats.md``.

A batch is what one flush of a stream sends: every frame ready at that moment, of one message,
in a single arithmetic-coded payload (one length prefix, given by the container; bit-granular
termination). Per-frame facts are symbols of that payload rather than fields: sequence numbers
are implicit (batches arrive in order), the frame kind, token count and stage count cost a bit
or less for the common case. Items, in order, until a terminator:

- ``MODEL`` frame: token count (1..F), stage count, the stages' RVQ codes, then (exact tier) the
  tokens under the decoder's distribution; semantic-tier batches (retired: read, never written)
  have codes only;
- ``ZSTD`` / ``RAW`` frame (fallback, no model step): payload length, then its bytes;
- ``RESET``: the decoder starts a fresh language-model context before the next frame;
- ``END_BATCH``: the message goes on in a later batch; exact tier: an 8-bit check of the
  message's text so far (a MODEL frame of fewer than F tokens is always a batch's last frame:
  after one, the terminator is coded from a two-symbol table);
- ``END_MESSAGE``: the message ends here; exact tier: a 16-bit check of the whole message.

This module is the syntax only (``BatchWriter`` writes the exact tier, ``BatchReader`` reads both
tiers); the codec drives it
(``stream.py``). Checks are the low bits of a CRC-32 of the message's UTF-8 bytes, started from
``CHECK_SEED`` and run across batches.
"""

from __future__ import annotations

import enum
import functools
import zlib
from dataclasses import dataclass

import numpy as np

from rvqstream.models.coding import exact_stage_table, max_tokens
from rvqstream.models.entropy import ArithmeticDecoder, ArithmeticEncoder, cumulative
from rvqstream.models.errors import MalformedError, TruncatedError

BATCH_CHECK_BITS = 8
MESSAGE_CHECK_BITS = 16
LENGTH_CLASSES = 28            # fallback payloads are shorter than 2**27 bytes


class Item(enum.IntEnum):
    MODEL = 0
    ZSTD = 1
    RAW = 2
    RESET = 3
    END_BATCH = 4
    END_MESSAGE = 5


# frequencies: model frames are the common case. A frame of fewer than F tokens is always the
# last of its batch (flushes cut frames short only at their end), so after one the terminator
# comes from its own two-symbol table, and the main table keeps little mass for terminators.
_ITEM_TABLE = cumulative(np.array([4096, 32, 32, 16, 256, 64], np.int64))
_TERMINATOR_TABLE = cumulative(np.array([7, 1], np.int64))     # END_BATCH, END_MESSAGE


@functools.cache
def _count_table(frame: int) -> np.ndarray:
    """Token count 1..F of a model frame: a full frame (F) has half the mass (read-only: one
    array per F)."""
    table = cumulative(np.array([1] * (frame - 1) + [frame - 1], np.int64))
    table.setflags(write=False)
    return table



def message_check(crc: int, data: bytes) -> int:
    """The running CRC-32 of a message's UTF-8 bytes after ``data`` (``crc=CHECK_SEED`` at its start)."""
    return zlib.crc32(data, crc)


@dataclass(frozen=True)
class Batch:
    """One flush of a stream, coded. ``text_bytes``: UTF-8 bytes of text it carries; ``crc``: the
    message's running check value after it (to continue the message in another encoder);
    ``model_tokens``: tokens in model frames; ``degraded_frames``: frames a scheduler degraded."""

    data: bytes
    text_bytes: int
    frames: int
    fallback_frames: int
    model_tokens: int
    message_end: bool
    crc: int
    degraded_frames: int = 0


class BatchWriter:
    """Writes the items of one batch (``finish`` -> bytes)."""

    def __init__(self, frame: int, stages: int, codes: int):
        self._enc = ArithmeticEncoder()
        self._frame, self._stages, self._codes = frame, stages, codes
        self._counts = _count_table(frame)
        self._stage_table = exact_stage_table(stages)
        self._after_short = False       # the last item was a MODEL frame of fewer than F tokens

    def item(self, item: Item) -> None:
        if self._after_short:
            if item not in (Item.END_BATCH, Item.END_MESSAGE):
                raise ValueError("a frame of fewer than F tokens must be the last of its batch")
            self._enc.encode_symbol(_TERMINATOR_TABLE, int(item == Item.END_MESSAGE))
        else:
            self._enc.encode_symbol(_ITEM_TABLE, int(item))
        self._after_short = False

    def model_frame(self, n_tokens: int, codes: list[int], symbols: list[tuple[int, int, int]]) -> None:
        """An exact-tier MODEL item: its token count, stage count and codes, then the tokens'
        intervals ``(low, high, total)`` under the decoder's distribution."""
        self.item(Item.MODEL)
        self._enc.encode_symbol(self._counts, n_tokens - 1)
        self._enc.encode_symbol(self._stage_table, len(codes))
        for c in codes:
            self._enc.encode_uniform(int(c), self._codes)
        for low, high, total in symbols:
            self._enc.encode(low, high, total)
        self._after_short = n_tokens < self._frame

    def fallback_frame(self, item: Item, payload: bytes) -> None:
        """A ZSTD or RAW item: the payload's length (Elias-gamma style), then its bytes."""
        self.item(item)
        n = len(payload)
        nbits = n.bit_length()
        if nbits >= LENGTH_CLASSES:
            raise ValueError(f"fallback payload of {n} bytes is too long for a frame")
        self._enc.encode_uniform(nbits, LENGTH_CLASSES)
        if nbits > 1:
            self._enc.encode_uniform(n - (1 << (nbits - 1)), 1 << (nbits - 1))
        for b in payload:
            self._enc.encode_uniform(b, 256)

    def end(self, message_end: bool, check: int) -> bytes:
        """The terminator with the check's low bits -> the batch bytes."""
        self.item(Item.END_MESSAGE if message_end else Item.END_BATCH)
        bits = MESSAGE_CHECK_BITS if message_end else BATCH_CHECK_BITS
        self._enc.encode_uniform(check & ((1 << bits) - 1), 1 << bits)
        return self._enc.finish()


class BatchReader:
    """Reads the items of one batch; ``TruncatedError`` when the data ends too early,
    ``MalformedError`` when it breaks the format."""

    def __init__(self, data: bytes, frame: int, stages: int, codes: int):
        if not data:
            raise TruncatedError("a frame batch is never empty")
        self.dec = ArithmeticDecoder(data)
        self._size = len(data)
        self._frame, self._stages, self._codes = frame, stages, codes
        self._counts = _count_table(frame)
        self._stage_table = exact_stage_table(stages)
        self.token_limit = max_tokens(len(data))
        self._tokens = 0
        self._after_short = False

    def item(self) -> Item:
        if self._after_short:
            self._after_short = False
            return Item.END_MESSAGE if self.dec.decode_symbol(_TERMINATOR_TABLE) else Item.END_BATCH
        return Item(self.dec.decode_symbol(_ITEM_TABLE))

    def model_frame_header(self, exact: bool) -> tuple[int, list[int]]:
        """-> (token count, codes) of a MODEL item; its tokens follow."""
        n = self.dec.decode_symbol(self._counts) + 1
        self._tokens += n
        if self._tokens > self.token_limit:
            raise MalformedError("corrupt frame batch: more tokens than its size allows")
        k = self.dec.decode_symbol(self._stage_table) if exact else self.dec.decode_uniform(self._stages) + 1
        self._after_short = n < self._frame
        return n, [self.dec.decode_uniform(self._codes) for _ in range(k)]

    def fallback_payload(self) -> bytes:
        """The bytes of a ZSTD or RAW item: never more than the batch's own size."""
        nbits = self.dec.decode_uniform(LENGTH_CLASSES)
        n = nbits if nbits <= 1 else (1 << (nbits - 1)) + self.dec.decode_uniform(1 << (nbits - 1))
        if n > self._size:
            raise MalformedError(f"corrupt frame batch: a {n}-byte fallback payload in a smaller batch")
        return bytes(self.dec.decode_uniform(256) for _ in range(n))

    def check(self, message_end: bool) -> int:
        return self.dec.decode_uniform(1 << (MESSAGE_CHECK_BITS if message_end else BATCH_CHECK_BITS))


def check_matches(value: int, crc: int, message_end: bool) -> bool:
    bits = MESSAGE_CHECK_BITS if message_end else BATCH_CHECK_BITS
    return value == crc & ((1 << bits) - 1)
