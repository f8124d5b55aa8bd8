"""Streaming encoder and decoder: text pushed in pieces becomes frames, frames become text.

``StreamEncoder`` tokenizes incrementally, holding back the last pre-token until more text, a
flush or the message end; it emits a frame as soon as F tokens are ready, and on ``flush()``
emits what it holds even if short. Frames are numbered across the stream (``seq``); a message
starts a fresh decoder context. Chunked input gives the same text as one-shot input.
"""

from __future__ import annotations

import codecs
import dataclasses

from rvqstream.models.coding import (
    Parts,
    choose_plan,
    decode_tokens,
    encode_plan,
    generate_tokens,
    start_context,
    text_check,
)
from rvqstream.models.entropy import ArithmeticDecoder, ArithmeticEncoder
from rvqstream.models.fallback import Fallback
from rvqstream.models.frames import Frame, FrameKind, IntegrityError, Tier
from rvqstream.models.runtime import LMState

FRAME_CHECK_BITS = 8


class StreamEncoder:
    def __init__(self, parts: Parts, fallback: Fallback, tier: Tier, stages: int | None):
        self.parts, self._fallback, self.tier = parts, fallback, tier
        if stages is not None and not 0 <= stages <= parts.stages:
            raise ValueError(f"stages must be in 0..{parts.stages}, got {stages}")
        if tier == Tier.SEMANTIC and stages == 0:
            raise ValueError("the semantic tier needs at least 1 stage")
        self.min_stages = (stages or 0) if tier == Tier.EXACT else (stages or parts.stages)
        self.stages_cap = parts.stages    # lowered by a scheduler to degrade gracefully
        self.fallback_only = False        # set by a scheduler to shed model work: fallback frames
        self._text = ""                  # held-back text (the unfinished last pre-token)
        self._tokens: list[int] = []     # tokenized, not yet in a frame
        self._state: LMState | None = None
        self._seq = 0
        self._frames_in_message = 0

    def push(self, text: str) -> list[Frame]:
        """Add text; -> the full frames that became ready."""
        if not text:
            return []
        final, self._text = self.parts.tokenizer.split_final(self._text + text)
        self._tokens += self.parts.tokenizer.encode(final)
        out = []
        while len(self._tokens) >= self.parts.frame:
            out.append(self._emit(self.parts.frame, end=False))
        return out

    def flush(self) -> list[Frame]:
        """Emit everything held, as short frames if need be (the latency budget expired)."""
        self._tokens += self.parts.tokenizer.encode(self._text)
        self._text = ""
        out = []
        while self._tokens:
            out.append(self._emit(min(len(self._tokens), self.parts.frame), end=False))
        return out

    def end_message(self) -> list[Frame]:
        """Flush and mark the message's last frame; the next push starts a new message."""
        out = self.flush()
        if out:
            last = out[-1]
            out[-1] = dataclasses.replace(last, message_end=True)
            self._frames_in_message = 0
        else:   # nothing held: an empty frame carries the end mark
            out.append(self._frame(FrameKind.RAW, 0, 0, b"", end=True))
        self._state = None
        return out

    @property
    def pending_text(self) -> int:
        """Characters and tokens held back, not yet in a frame (0 when nothing waits)."""
        return len(self._text) + len(self._tokens)

    def _frame(self, kind, n_tokens, n_stages, payload, end) -> Frame:
        f = Frame(self._seq, kind, n_tokens, n_stages, payload,
                  message_start=self._frames_in_message == 0, message_end=end)
        self._seq += 1
        self._frames_in_message = 0 if end else self._frames_in_message + 1
        return f

    def _emit(self, n: int, end: bool) -> Frame:
        p = self.parts
        tokens, self._tokens = self._tokens[:n], self._tokens[n:]
        data = p.tokenizer.token_bytes(tokens)
        cap = min(self.stages_cap, p.stages)
        enc = ArithmeticEncoder()
        if self.tier == Tier.SEMANTIC:
            stages = max(1, min(self.min_stages, cap))
            for c in p.frame_encoder.codes([tokens], stages)[0]:
                enc.encode_uniform(int(c), p.codes)
            return self._frame(FrameKind.MODEL, n, stages, enc.finish(), end)
        if self.fallback_only:
            return self._fallback_frame(n, data, end)
        state = start_context(p, self._state, p.frame)
        plan = choose_plan(p, state, tokens, min(self.min_stages, cap), cap, with_eos=False)
        for c in plan.codes:
            enc.encode_uniform(c, p.codes)
        encode_plan(enc, plan, tokens)
        enc.encode_uniform(text_check(data, FRAME_CHECK_BITS), 1 << FRAME_CHECK_BITS)
        payload = enc.finish()
        if len(payload) >= len(data) and self.min_stages == 0:
            return self._fallback_frame(n, data, end)
        self._state = plan.state
        return self._frame(FrameKind.MODEL, n, plan.n_stages, payload, end)

    def _fallback_frame(self, n_tokens: int, data: bytes, end: bool) -> Frame:
        """The frame's bytes, zstd-compressed with the dictionary when that is smaller; the next
        frame starts a fresh context."""
        z = self._fallback.compress(data)
        kind, payload = (FrameKind.ZSTD, z) if len(z) < len(data) else (FrameKind.RAW, data)
        self._state = self.parts.step.new_state()
        return self._frame(kind, n_tokens, 0, payload, end)


class StreamDecoder:
    def __init__(self, parts: Parts, fallback: Fallback, tier: Tier):
        self.parts, self._fallback, self.tier = parts, fallback, tier
        self._state: LMState | None = None
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._broken = False

    def push(self, frame: Frame) -> str:
        """-> the text that is complete after ``frame`` (partial UTF-8 is held back).
        ``IntegrityError`` on a check mismatch; later frames of that message raise it too."""
        if frame.message_start:
            self._state, self._broken = None, False
            self._utf8.reset()
        if self._broken:
            raise IntegrityError(f"frame {frame.seq} follows a frame that failed its check")
        try:
            data = self._decode(frame)
            text = self._utf8.decode(data, final=frame.message_end)
        except (IntegrityError, UnicodeDecodeError, EOFError, ValueError) as e:
            self._broken = True
            if isinstance(e, IntegrityError):
                raise
            raise IntegrityError(f"frame {frame.seq} does not decode: {e}") from None
        if frame.message_end:
            self._state = None
        return text

    def _decode(self, frame: Frame) -> bytes:
        p = self.parts
        if frame.n_tokens > p.frame or frame.n_stages > p.stages:
            raise ValueError(f"frame {frame.seq}: {frame.n_tokens} tokens / {frame.n_stages} stages "
                             f"exceed the model's {p.frame} / {p.stages}")
        if frame.kind != FrameKind.MODEL:
            data = frame.payload if frame.kind == FrameKind.RAW else self._fallback.decompress(frame.payload)
            self._state = p.step.new_state()
            return data
        dec = ArithmeticDecoder(frame.payload)
        codes = [dec.decode_uniform(p.codes) for _ in range(frame.n_stages)]
        state = start_context(p, self._state, p.frame)
        if self.tier == Tier.SEMANTIC:
            tokens = generate_tokens(p, state, codes, frame.n_tokens)
            self._state = state
            return p.tokenizer.token_bytes(tokens)
        tokens, _ = decode_tokens(p, dec, state, codes, frame.n_tokens, stop_at_eos=False)
        data = p.tokenizer.token_bytes(tokens)
        if dec.decode_uniform(1 << FRAME_CHECK_BITS) != text_check(data, FRAME_CHECK_BITS):
            raise IntegrityError(f"frame {frame.seq} failed its integrity check")
        self._state = state
        return data
