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
MAX_TOTAL = 1 << 40
_SPILL_BITS = 4096          # encoder bits held as one integer before they become bytes
_READ_BITS = STATE_BITS     # the most bits a decoder reads at once
_WINDOW_BYTES = (_READ_BITS + 7) // 8 + 1      # bytes that hold any _READ_BITS bits

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
    """Codes symbols into bits. Each symbol's settled leading bits go out as one run, and the
    underflow (straddle) steps that follow it are counted at once: the same bits as coding one
    bit a step (docs' coder specification), a few integer operations a symbol."""

    def __init__(self):
        self._low, self._high, self._pending = 0, _MASK, 0
        self._acc, self._acc_bits = 0, 0       # bits not yet in ``_out``, most significant first
        self._out = bytearray()

    def _put(self, value: int, n: int) -> None:
        """Append the ``n``-bit ``value`` to the output."""
        self._acc = (self._acc << n) | value
        self._acc_bits += n
        if self._acc_bits >= _SPILL_BITS:
            whole = self._acc_bits >> 3
            rest = self._acc_bits & 7
            self._out += (self._acc >> rest).to_bytes(whole, "big")
            self._acc &= (1 << rest) - 1
            self._acc_bits = rest

    def encode(self, cum_low: int, cum_high: int, total: int) -> None:
        """Code the symbol occupying [cum_low, cum_high) of a table with the given total."""
        low, high = self._low, self._high
        rng = high - low + 1
        high = low + cum_high * rng // total - 1
        low = low + cum_low * rng // total
        settled, straddle, self._low, self._high = _renormalize(low, high)
        if settled:
            run = low >> (STATE_BITS - settled)          # the settled bits, from the old low
            if self._pending:        # the first settled bit, then the pending bits (its opposite)
                first = run >> (settled - 1)
                self._put(first, 1)
                self._put(0 if first else (1 << self._pending) - 1, self._pending)
                self._pending = 0
                self._put(run & ((1 << (settled - 1)) - 1), settled - 1)
            else:
                self._put(run, settled)
        self._pending += straddle

    def encode_symbol(self, cum: np.ndarray, symbol: int) -> None:
        self.encode(int(cum[symbol]), int(cum[symbol + 1]), int(cum[-1]))

    def encode_uniform(self, value: int, n: int) -> None:
        """Code ``value`` in [0, n) with equal probabilities."""
        self.encode(value, value + 1, n)

    def finish(self) -> bytes:
        """Terminate (one 1 bit, zero padding) and return the bytes, trailing zero bytes dropped."""
        self._put(1, 1)
        self._put(0, self._pending + (-(self._acc_bits + self._pending) % 8))
        self._pending = 0
        out = bytes(self._out) + self._acc.to_bytes(self._acc_bits >> 3, "big")
        return out.rstrip(b"\x00")


def _renormalize(low: int, high: int) -> tuple[int, int, int, int]:
    """An interval after coding a symbol -> (settled, straddle, low, high): the leading bits low
    and high share (they leave the coder), then the underflow steps due (low = 01..., high =
    10...: how many bits after the top one low has as 1s and high as 0s, in a row), and the
    interval once both are shifted out, as that many one-bit steps would leave it."""
    settled = STATE_BITS - (low ^ high).bit_length()
    low = (low << settled) & _MASK
    high = ((high << settled) & _MASK) | ((1 << settled) - 1)
    low_ones = STATE_BITS - 1 - (~low & (_HALF - 1)).bit_length()
    high_zeros = STATE_BITS - 1 - (high & (_HALF - 1)).bit_length()
    straddle = min(low_ones, high_zeros)
    if straddle:
        low = (low << straddle) & (_HALF - 1)
        high = ((high << straddle) & (_HALF - 1)) | _HALF | ((1 << straddle) - 1)
    return settled, straddle, low, high


class ArithmeticDecoder:
    def __init__(self, data: bytes, limit_bits: int | None = None):
        """``limit_bits`` bounds how far past the data's end the decoder may read (zeros) before
        it raises ``TruncatedError``; by default ``STATE_BITS`` + 64."""
        self._data = bytes(data)
        self._pos = 0
        self._limit = 8 * len(data) + (STATE_BITS + 64 if limit_bits is None else limit_bits)
        self._low, self._high = 0, _MASK
        self._code = self._read(STATE_BITS)

    def _read(self, n: int) -> int:
        """The next ``n`` bits (at most ``_READ_BITS``; zeros past the data's end)."""
        pos = self._pos
        if pos + n > self._limit:
            raise TruncatedError("arithmetic-coded data ends before the message does")
        self._pos = pos + n
        at = pos >> 3
        window = int.from_bytes(self._data[at:at + _WINDOW_BYTES].ljust(_WINDOW_BYTES, b"\x00"), "big")
        return (window >> (8 * _WINDOW_BYTES - (pos & 7) - n)) & ((1 << n) - 1)

    def target(self, total: int) -> int:
        """The value in [0, total) that locates the next symbol."""
        rng = self._high - self._low + 1
        return ((self._code - self._low + 1) * total - 1) // rng

    def consume(self, cum_low: int, cum_high: int, total: int) -> None:
        low, high, code = self._low, self._high, self._code
        rng = high - low + 1
        high = low + cum_high * rng // total - 1
        low = low + cum_low * rng // total
        settled, straddle, self._low, self._high = _renormalize(low, high)
        if settled:
            code = ((code << settled) & _MASK) | self._read(settled)
        if straddle:
            code = (code & _HALF) | ((code << straddle) & (_HALF - 1)) | self._read(straddle)
        self._code = code

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
