"""Stream frames: what an encode stream emits and a channel log stores, and their compact bytes.

A frame holds up to F tokens of one message. ``MODEL`` frames carry arithmetic-coded codes and
tokens (exact tier: tokens under the decoder's distribution, then an 8-bit check of the frame's
text; semantic tier: codes only); ``ZSTD`` and ``RAW`` frames carry the frame's UTF-8 bytes
(compressed with the bundle's dictionary, or as they are). A fallback frame ends the context: the
next frame of the message starts a fresh one, as at a keyframe.

``Frame.to_bytes`` layout: varint seq, one flags byte (kind:2 | start:1 | end:1 | stages:4),
one byte n_tokens, then the payload to the end.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FrameKind(enum.IntEnum):
    MODEL = 0
    ZSTD = 1
    RAW = 2


class Tier(enum.IntEnum):
    EXACT = 0
    SEMANTIC = 1

    @classmethod
    def parse(cls, tier: str | Tier) -> Tier:
        if isinstance(tier, Tier):
            return tier
        try:
            return cls[str(tier).upper()]
        except KeyError:
            raise ValueError(f"unknown tier {tier!r}: expected 'exact' or 'semantic'") from None


class IntegrityError(ValueError):
    """Decoded text failed its integrity check (model mismatch or corrupt data): refetch it in
    fallback form."""


@dataclass(frozen=True)
class Frame:
    seq: int
    kind: FrameKind
    n_tokens: int
    n_stages: int
    payload: bytes
    message_start: bool
    message_end: bool

    def to_bytes(self) -> bytes:
        flags = (int(self.kind) << 6) | (self.message_start << 5) | (self.message_end << 4) | self.n_stages
        return write_varint(self.seq) + bytes([flags, self.n_tokens]) + self.payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Frame:
        seq, pos = read_varint(data, 0)
        if len(data) < pos + 2:
            raise EOFError("frame header is truncated")
        flags, n_tokens = data[pos], data[pos + 1]
        kind = flags >> 6
        if kind > FrameKind.RAW:
            raise ValueError(f"unknown frame kind {kind}")
        return cls(seq, FrameKind(kind), n_tokens, flags & 0x0F, bytes(data[pos + 2:]),
                   bool(flags & 0x20), bool(flags & 0x10))


def write_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data):
            raise EOFError("varint is truncated")
        if shift > 63:
            raise ValueError("varint is too long")
        b = data[pos]
        n |= (b & 0x7F) << shift
        shift += 7
        pos += 1
        if not b & 0x80:
            return n, pos
