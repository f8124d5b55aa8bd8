"""Arithmetic coding with bit-granular termination, and deterministic integer frequency tables.

The coder keeps a ``STATE_BITS``-bit interval (Python integers, so there is no overflow); symbol
frequencies are positive integers with a total of at most ``MAX_TOTAL``. ``finish()`` writes a
single 1 bit and pads to a byte; the decoder reads zeros past the end, so trailing zero bytes may
be dropped from the output.

``freqs_from_logits`` turns float32 logits into integer frequencies with exact integer arithmetic
after three IEEE float32 operations and a truncation, so identical logits give identical tables
on every machine. The decoder step graph computes the same table (``FREQ_TABLE``, ``LOG2E_SCALED``,
``FREQ_OFFSET``) in its last nodes; this numpy version is its reference.
"""

from __future__ import annotations

import math

import numpy as np

from rvqstream.models.errors import TruncatedError

STATE_BITS = 62
_FULL = 1 << STATE_BITS
_MASK = _FULL - 1
_HALF = _FULL >> 1
_QUARTER = _HALF >> 1
MAX_TOTAL = 1 << 40

FREQ_BITS = 24              # the most likely symbol gets 2**24 (to within a factor of 2)
_STEPS_PER_BIT = 64         # logits are quantized to 1/64 of a bit
LOG2E_SCALED = np.float32(_STEPS_PER_BIT / math.log(2))


def _exp2_table() -> np.ndarray:
    """[64] int64: floor(2**FREQ_BITS * 2**(r/64)) = the 64th root of 2**(64*FREQ_BITS + r),
    taken as six integer square roots (exact, no floating point)."""
    out = []
    for r in range(_STEPS_PER_BIT):
        x = 1 << (_STEPS_PER_BIT * FREQ_BITS + r)
        for _ in range(6):
            x = math.isqrt(x)
        out.append(x)
    return np.array(out, dtype=np.int64)


_MIN_STEP = -_STEPS_PER_BIT * FREQ_BITS
# FREQ_TABLE[i] = the frequency of a symbol whose quantized log2-probability is (i + _MIN_STEP)/64 bits
_EXP2 = _exp2_table()
FREQ_TABLE = np.array([int(_EXP2[k & (_STEPS_PER_BIT - 1)]) >> -(k >> 6) for k in range(_MIN_STEP, 1)],
                 dtype=np.int64)
FREQ_OFFSET = np.float32(-_MIN_STEP)


def freqs_from_logits(logits: np.ndarray) -> np.ndarray:
    """float32 logits [V] -> int64 frequencies [V], every one >= 1, the largest ~2**FREQ_BITS.
    Each symbol's log2-probability relative to the best is quantized to 1/64 bit (floor, via the
    IEEE float32 ops below, which give the same result on every machine for the same logits)."""
    x = logits - logits.max()
    x *= LOG2E_SCALED
    x += FREQ_OFFSET
    np.maximum(x, 0, out=x)
    return FREQ_TABLE.take(x.astype(np.int32))


def cumulative(freqs: np.ndarray) -> np.ndarray:
    """[V] frequencies -> [V+1] cumulative table starting at 0."""
    cum = np.empty(len(freqs) + 1, dtype=np.int64)
    cum[0] = 0
    np.cumsum(freqs, out=cum[1:])
    return cum


class ArithmeticEncoder:
    def __init__(self):
        self._low, self._high, self._pending = 0, _MASK, 0
        self._bits: list[int] = []

    def encode(self, cum_low: int, cum_high: int, total: int) -> None:
        """Code the symbol occupying [cum_low, cum_high) of a table with the given total."""
        low, high = self._low, self._high
        rng = high - low + 1
        high = low + cum_high * rng // total - 1
        low = low + cum_low * rng // total
        bits = self._bits
        while not (low ^ high) & _HALF:
            bit = low >> (STATE_BITS - 1)
            bits.append(bit)
            if self._pending:
                bits.extend([bit ^ 1] * self._pending)
                self._pending = 0
            low = (low << 1) & _MASK
            high = ((high << 1) & _MASK) | 1
        while low & ~high & _QUARTER:
            self._pending += 1
            low = (low << 1) ^ _HALF
            high = ((high ^ _HALF) << 1) | _HALF | 1
        self._low, self._high = low, high & _MASK

    def encode_symbol(self, cum: np.ndarray, symbol: int) -> None:
        self.encode(int(cum[symbol]), int(cum[symbol + 1]), int(cum[-1]))

    def encode_uniform(self, value: int, n: int) -> None:
        """Code ``value`` in [0, n) with equal probabilities."""
        self.encode(value, value + 1, n)

    def finish(self) -> bytes:
        """Terminate (one 1 bit, zero padding) and return the bytes, trailing zero bytes dropped."""
        bits = self._bits + [1] + [0] * self._pending
        bits += [0] * (-len(bits) % 8)
        out = np.packbits(np.array(bits, dtype=np.uint8)).tobytes()
        return out.rstrip(b"\x00")


class ArithmeticDecoder:
    def __init__(self, data: bytes, limit_bits: int | None = None):
        """``limit_bits`` bounds how far past the data's end the decoder may read (zeros) before
        it raises ``TruncatedError``; by default ``STATE_BITS`` + 64."""
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tolist()
        self._pos = 0
        self._limit = len(self._bits) + (STATE_BITS + 64 if limit_bits is None else limit_bits)
        self._low, self._high, self._code = 0, _MASK, 0
        for _ in range(STATE_BITS):
            self._code = (self._code << 1) | self._read()

    def _read(self) -> int:
        pos = self._pos
        self._pos = pos + 1
        if pos < len(self._bits):
            return self._bits[pos]
        if pos >= self._limit:
            raise TruncatedError("arithmetic-coded data ends before the message does")
        return 0

    def target(self, total: int) -> int:
        """The value in [0, total) that locates the next symbol."""
        rng = self._high - self._low + 1
        return ((self._code - self._low + 1) * total - 1) // rng

    def consume(self, cum_low: int, cum_high: int, total: int) -> None:
        low, high, code = self._low, self._high, self._code
        rng = high - low + 1
        high = low + cum_high * rng // total - 1
        low = low + cum_low * rng // total
        while not (low ^ high) & _HALF:
            low = (low << 1) & _MASK
            high = ((high << 1) & _MASK) | 1
            code = ((code << 1) & _MASK) | self._read()
        while low & ~high & _QUARTER:
            low = (low << 1) ^ _HALF
            high = ((high ^ _HALF) << 1) | _HALF | 1
            code = (code & _HALF) | ((code << 1) & (_MASK >> 1)) | self._read()
        self._low, self._high, self._code = low, high & _MASK, code

    def decode_symbol(self, cum: np.ndarray) -> int:
        total = int(cum[-1])
        v = self.target(total)
        s = int(np.searchsorted(cum, v, side="right")) - 1
        self.consume(int(cum[s]), int(cum[s + 1]), total)
        return s

    def decode_uniform(self, n: int) -> int:
        v = self.target(n)
        self.consume(v, v + 1, n)
        return v
