"""Model coding shared by blobs and streams: a message's LM context and the exact tier's frame coder.

A context starts with the start symbol at every message start, at a keyframe (before a frame that
could take it past ``KEYFRAME`` tokens) and after a fallback frame. Within a frame of up to F
tokens, each token's distribution is the decoder step's, conditioned on the frame's quantized
latent when the frame carries n > 0 RVQ stages.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from rvqstream.models.entropy import ArithmeticDecoder, ArithmeticEncoder, cumulative
from rvqstream.models.errors import MalformedError, TooLargeError
from rvqstream.models.int_runtime import IntState, IntStepModel, Range
from rvqstream.models.runtime import FrameEncoder, LMState, StepModel, dequantize
from rvqstream.models.tokenizer import EOS_ID, Tokenizer

KEYFRAME = 240              # tokens per context at most (the model's context is 256 positions)
CHECK_SEED = 0x5EED
TOKENS_PER_BIT = 16          # decoders give up past 16 tokens per payload bit (+ slack): no hangs
SEARCH_THRESHOLD_BITS = 150  # only frames dearer than this under the plain LM try RVQ stages (see MODEL_CARD.md)

ContextState = LMState | IntState     # a decoder context of the float or the integer model
T = TypeVar("T")


@dataclass
class Parts:
    """The loaded pieces of one model bundle."""

    tokenizer: Tokenizer
    step: StepModel | IntStepModel
    frame_encoder: FrameEncoder | None     # None: the integer model (exact tier only, stages == 0)
    codebooks: np.ndarray | None           # [N,K,D] float32
    frame: int                 # F
    stages: int                # N
    codes: int                 # K
    zdict: bytes

    @property
    def code_bits(self) -> float:
        return math.log2(self.codes)


@dataclass
class FramePlan:
    """How one frame is coded: its stages and codes, each symbol's coding interval, the context
    after it."""

    n_stages: int
    codes: list[int]
    ranges: list[Range]        # (low, high, total) of each coded symbol (tokens, and EOS if any)
    state: ContextState
    token_bits: float


def max_tokens(payload_bytes: int) -> int:
    """Most tokens a decoder accepts from a payload of ``payload_bytes`` (blobs and batches)."""
    return TOKENS_PER_BIT * 8 * payload_bytes + 256


class OutputLimit:
    """What a decoder has made of one payload, against its limits: more tokens than
    ``max_tokens(payload_bytes)`` is malformed data (``MalformedError``), more UTF-8 bytes than
    the caller's ``max_bytes`` too large (``TooLargeError``). Every token but ``EOS_ID`` stands for
    at least one byte, so ``max_bytes`` caps the tokens too: decoders stop within a frame of either
    limit."""

    def __init__(self, payload_bytes: int, max_bytes: int | None):
        self.max_tokens, self.max_bytes = max_tokens(payload_bytes), max_bytes
        self.tokens = self.bytes = 0

    def add(self, tokens: int, data_bytes: int) -> None:
        """Count one frame's ``tokens`` and the ``data_bytes`` they stand for."""
        self.tokens += tokens
        self.bytes += data_bytes
        if self.max_bytes is not None and self.bytes > self.max_bytes:
            raise TooLargeError(f"decodes to more than {self.max_bytes} bytes")
        if self.tokens > self.max_tokens:
            raise MalformedError("decodes to more tokens than its size allows")


@functools.cache
def exact_stage_table(stages: int) -> np.ndarray:
    """Cumulative table of a frame's stage count 0..N in the exact tier (blobs and batches):
    P(0) = 0.94, the rest shared evenly, since frames rarely pay for stages there (read-only:
    one array per N)."""
    table = cumulative(np.array([960] + [8] * stages, np.int64))
    table.setflags(write=False)
    return table


def start_context(parts: Parts, state: ContextState | None, frame_capacity: int) -> ContextState:
    """The context for the next frame: ``state`` itself, or a fresh one at a keyframe (an integer
    model's context starts afresh in place: its slots may belong to a batch)."""
    if state is None:
        return parts.step.new_state()
    if state.length + frame_capacity > KEYFRAME:
        if isinstance(state, IntState):
            state.reset()
            return state
        return parts.step.new_state()
    return state


def restart_context(state: ContextState | None) -> ContextState | None:
    """The context after a message end or a fallback frame, so that the next frame starts afresh:
    an integer model's restarts in place (its slots are reused, nothing is allocated), a float
    model's is dropped (None)."""
    if isinstance(state, IntState):
        state.reset()
        return state
    return None


def plan_tokens(parts: Parts, state: ContextState, tokens: list[int], codes: list[int],
                with_eos: bool = False) -> FramePlan:
    """Run the decoder over ``tokens`` (and a final EOS when ``with_eos``) from ``state`` (the
    integer model: the whole frame in one call)."""
    if isinstance(parts.step, IntStepModel):
        return run_frames(parts, plan_frame(parts, state, tokens, 0, 0, with_eos))
    st = state.copy()
    symbols = tokens + ([EOS_ID] if with_eos else [])
    z = dequantize(parts.codebooks, codes) if codes else None
    ranges = []
    for j, t in enumerate(symbols):
        cum, kv = parts.step.step(st, z, j)
        ranges.append((int(cum[t]), int(cum[t + 1]), int(cum[-1])))
        if t != EOS_ID:
            parts.step.advance(st, t, kv)
    return FramePlan(len(codes), list(codes), ranges, st, symbol_bits(ranges))


@dataclass
class FrameRequest:
    """Model work a frame plan needs: the coding intervals of ``symbols`` coded from ``state`` (an
    integer model's context, advanced in place). A driver may compute many requests in one call."""

    state: IntState
    symbols: list[int]


Frames = Generator[FrameRequest, list, T]   # yields frame requests; is sent each one's intervals


def run_frames(parts: Parts, frames: Frames[T]) -> T:
    """Drive ``frames`` one frame request at a time -> its result."""
    try:
        request = next(frames)
        while True:
            request = frames.send(parts.step.frame(request.state, request.symbols))
    except StopIteration as stop:
        return stop.value


def plan_frame(parts: Parts, state: ContextState, tokens: list[int], min_stages: int, max_stages: int,
               with_eos: bool) -> Frames[FramePlan]:
    """``choose_plan`` as frame requests: the integer model's frame is one request (a driver may
    batch it with other streams' frames) that advances ``state`` in place (it writes only the
    frame's own slots; a caller that codes the frame another way starts a fresh context after
    it); the float model plans at once."""
    if not isinstance(parts.step, IntStepModel):
        return choose_plan(parts, state, tokens, min_stages, max_stages, with_eos)
    symbols = tokens + ([EOS_ID] if with_eos else [])
    ranges = (yield FrameRequest(state, symbols)) if symbols else []
    return FramePlan(0, [], ranges, state, symbol_bits(ranges))


def symbol_bits(ranges: list[Range]) -> float:
    """Bits of coding symbols with these intervals ((low, high, total) each)."""
    return sum(math.log2(total / (high - low)) for low, high, total in ranges)


def choose_plan(parts: Parts, state: ContextState, tokens: list[int], min_stages: int, max_stages: int,
                with_eos: bool, extra_bits_with_stages: float = 0.0) -> FramePlan:
    """The cheapest of a greedy search over stage counts (from ``min_stages`` up, while each extra
    stage lowers the total of code bits and token bits). Frames with EOS use 0 stages."""
    if with_eos or not tokens:
        return plan_tokens(parts, state, tokens, [], with_eos)
    all_codes: list[int] | None = None

    def plan(n: int) -> FramePlan:
        nonlocal all_codes
        if n and all_codes is None:
            all_codes = parts.frame_encoder.codes([tokens], max_stages)[0].tolist()
        return plan_tokens(parts, state, tokens, all_codes[:n] if n else [])

    def cost(p: FramePlan) -> float:
        return p.token_bits + p.n_stages * parts.code_bits + (extra_bits_with_stages if p.n_stages else 0.0)

    best = plan(min_stages)
    if best.token_bits < SEARCH_THRESHOLD_BITS and min_stages == 0:
        return best
    n = min_stages
    while n < max_stages:
        cand = plan(n + 1)
        if cost(cand) >= cost(best):
            break
        best, n = cand, n + 1
    return best


def encode_plan(enc: ArithmeticEncoder, plan: FramePlan) -> None:
    """Code the plan's symbols (their intervals) with ``enc``."""
    for low, high, total in plan.ranges:
        enc.encode(low, high, total)


StepRequest = tuple[ContextState, "np.ndarray | None", int]   # (context, frame latent or None, position in frame)
Steps = Generator[StepRequest, tuple, T]   # yields what it needs a step of; is sent step()'s (table, kv)


def run_steps(parts: Parts, steps: Steps[T]) -> T:
    """Drive ``steps`` one model step at a time -> its result."""
    try:
        request = next(steps)
        while True:
            request = steps.send(parts.step.step(*request))
    except StopIteration as stop:
        return stop.value


def decode_tokens(parts: Parts, dec: ArithmeticDecoder, state: ContextState, codes: list[int], count: int,
                  stop_at_eos: bool) -> tuple[list[int], bool]:
    """Decode up to ``count`` tokens into ``state`` (advanced in place); -> (tokens, saw_eos)."""
    return run_steps(parts, decode_token_steps(parts, dec, state, codes, count, stop_at_eos))


def decode_token_steps(parts: Parts, dec: ArithmeticDecoder, state: ContextState, codes: list[int], count: int,
                       stop_at_eos: bool) -> Steps[tuple[list[int], bool]]:
    """``decode_tokens`` as steps: a batched driver runs the model for many decoders at once."""
    z = dequantize(parts.codebooks, codes) if codes else None
    out = []
    for j in range(count):
        cum, kv = yield state, z, j
        t = dec.decode_symbol(cum)
        if t == EOS_ID:
            if stop_at_eos:
                return out, True
            raise MalformedError("end-of-message symbol inside a frame of known length")
        parts.step.advance(state, t, kv)
        out.append(t)
    return out, False


def generate_tokens(parts: Parts, state: ContextState, codes: list[int], count: int) -> list[int]:
    """Semantic tier (retired, read only): ``count`` tokens generated greedily from the frame's
    codes and the context."""
    z = dequantize(parts.codebooks, codes) if codes else None
    out = []
    for j in range(count):
        cum, kv = parts.step.step(state, z, j)
        freqs = np.diff(cum)
        freqs[EOS_ID] = 0
        t = int(freqs.argmax())
        parts.step.advance(state, t, kv)
        out.append(t)
    return out


def text_check(data: bytes, bits: int) -> int:
    """``bits``-bit integrity check of UTF-8 bytes: low bits of a CRC-32 started from a nonzero
    value, so that a payload cut down to zeros (the decoder reads zeros past the end) fails it."""
    return zlib.crc32(data, CHECK_SEED) & ((1 << bits) - 1)
