"""Streaming encoder and decoder: text pushed in pieces becomes frame batches, batches become text.

``StreamEncoder`` tokenizes incrementally, holding back the last pre-token until more text, a
flush or the message end (a pre-token past ``MAX_HELD_CHARS`` characters is cut, all but its last
character tokenized: text with no word break costs linear time); it codes a frame as soon as F
tokens are ready (the model work happens as text arrives) and holds it, and ``flush()`` /
``end_message()`` write everything held, short frames included, as one ``Batch`` (batch.py). A
message starts a fresh decoder context and so does a keyframe; chunked input gives the same text
as one-shot input (token boundaries may differ).

    enc, dec = codec.encoder(), codec.decoder()
    enc.push("text as it ")
    enc.push("arrives")
    batch = enc.end_message()               # Batch: .data is the bytes that travel
    dec.push(batch.data)                    # Decoded(text="text as it arrives", message_end=True)
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from rvqstream.models.batch import (
    Batch,
    BatchReader,
    BatchWriter,
    Item,
    check_matches,
    message_check,
)
from rvqstream.models.coding import (
    CHECK_SEED,
    ContextState,
    Frames,
    Parts,
    decode_tokens,
    generate_tokens,
    plan_frame,
    restart_context,
    run_frames,
    start_context,
)
from rvqstream.models.errors import Cancel, CodecError, IntegrityError, TooLargeError
from rvqstream.models.fallback import Fallback
from rvqstream.models.frames import FrameKind, Tier

FALLBACK_TRY_BITS_PER_BYTE = 4.0   # only frames dearer than this under the model try zstd
MAX_HELD_CHARS = 1024              # the longest unfinished pre-token an encoder holds back untokenized


@dataclass(frozen=True)
class Frame:
    """A coded frame held by an encoder until its batch is written. ``data``: its text's UTF-8
    bytes; model frames: ``codes`` and the tokens' intervals ``symbols`` (low, high, total);
    fallback frames: ``payload`` (zstd with the dictionary, or raw)."""

    kind: FrameKind
    n_tokens: int
    data: bytes
    codes: tuple[int, ...] = ()
    symbols: tuple[tuple[int, int, int], ...] = ()
    payload: bytes = b""
    reset: bool = False        # decoders start a fresh context before this frame
    degraded: bool = False     # made under a scheduler's degradation (fallback form)


@dataclass(frozen=True)
class Decoded:
    """What one batch decoded to: the text complete after it (partial UTF-8 held back)."""

    text: str
    message_end: bool
    frames: int
    fallback_frames: int


RETIRED = ("the semantic text tier is retired: data already written in it decodes, but no new blob "
           "or stream is made in it (message codes carry a message's meaning now: Search, SyncCodes)")


def written(tier: Tier) -> None:
    """``ValueError`` unless ``tier`` is one that encoders write: the semantic text tier is retired
    (its blobs and streams decode; none are made)."""
    if tier == Tier.SEMANTIC:
        raise ValueError(RETIRED)


def no_semantic(parts: Parts, tier: Tier) -> None:
    """``ValueError`` when ``tier`` is semantic and the model has no RVQ codes (integer model)."""
    if tier == Tier.SEMANTIC and not parts.stages:
        raise ValueError("this model reads the exact tier only: semantic-tier data (a retired tier) is "
                         "read by the float bundle (rvqstream.models.bundle.SEMANTIC_DIR)")


class StreamEncoder:
    """One exact-tier stream's encoder (not thread-safe: one stream, one caller at a time).
    ``cancel``, when set, is checked before each frame is coded (``CancelledError``; the frame stays held)."""

    def __init__(self, parts: Parts, fallback: Fallback, tier: Tier, stages: int | None,
                 cancel: Cancel | None = None):
        written(tier)
        self.parts, self._fallback, self.tier = parts, fallback, tier
        if stages is not None and not 0 <= stages <= parts.stages:
            raise ValueError(f"stages must be in 0..{parts.stages}, got {stages}")
        self.min_stages = stages or 0
        self.fallback_only = False        # set by a scheduler to shed model work: fallback frames
        self.cancel = cancel
        self.model_tokens = 0             # tokens put through the model so far
        self._text = ""                  # held-back text (the unfinished last pre-token)
        self._tokens: list[int] = []     # tokenized, not yet in a frame
        self._held: list[Frame] = []     # coded, not yet in a batch
        self._state: ContextState | None = None
        self._crc = CHECK_SEED
        self._reset_next = False

    def push(self, text: str) -> int:
        """Add text; the full frames that became ready are coded now. -> frames held."""
        return run_frames(self.parts, self.push_frames(text))

    def flush(self) -> Batch | None:
        """Everything held, as short frames if need be, in one batch; None when nothing is held."""
        return run_frames(self.parts, self.flush_frames())

    def end_message(self) -> Batch:
        """Flush and end the message (a batch with no frames when nothing is held); the next
        push starts a new message."""
        return run_frames(self.parts, self.end_message_frames())

    # the same operations as frame requests (``coding.Frames``): a scheduler batches many streams'

    def push_frames(self, text: str) -> Frames[int]:
        if text:
            final, self._text = self.parts.tokenizer.split_final(self._text + text, MAX_HELD_CHARS)
            self._tokens += self.parts.tokenizer.encode(final)
            while len(self._tokens) >= self.parts.frame:
                self._held.append((yield from self._emit(self.parts.frame)))
        return len(self._held)

    def flush_frames(self) -> Frames[Batch | None]:
        yield from self._frame_all()
        return self._seal(False) if self._held else None

    def end_message_frames(self) -> Frames[Batch]:
        yield from self._frame_all()
        batch = self._seal(True)
        self._state, self._crc, self._reset_next = restart_context(self._state), CHECK_SEED, False
        return batch

    def resume_message(self, crc: int) -> None:
        """Continue a message whose earlier batches another encoder wrote (its running check value
        ``crc``): the next frame starts a fresh context, which the batch tells decoders."""
        self._state, self._crc, self._reset_next = restart_context(self._state), crc, True

    @property
    def pending(self) -> int:
        """Characters, tokens and frames not yet in a batch (0 when nothing waits)."""
        return len(self._text) + len(self._tokens) + sum(f.n_tokens or 1 for f in self._held)

    @property
    def held_tokens(self) -> int:
        """Tokens tokenized but not yet coded in a frame."""
        return len(self._tokens)

    @property
    def held_chars(self) -> int:
        """Characters held back untokenized (the unfinished last pre-token)."""
        return len(self._text)

    def _frame_all(self) -> Frames[None]:
        self._tokens += self.parts.tokenizer.encode(self._text)
        self._text = ""
        while self._tokens:
            self._held.append((yield from self._emit(min(len(self._tokens), self.parts.frame))))

    def _seal(self, message_end: bool) -> Batch:
        p = self.parts
        w = BatchWriter(p.frame, p.stages, p.codes)
        frames, self._held = self._held, []
        text_bytes = fallback = model_tokens = 0
        for f in frames:
            if f.reset:
                w.item(Item.RESET)
            if f.kind == FrameKind.MODEL:
                w.model_frame(f.n_tokens, list(f.codes), list(f.symbols))
                model_tokens += f.n_tokens
            else:
                w.fallback_frame(Item.ZSTD if f.kind == FrameKind.ZSTD else Item.RAW, f.payload)
                fallback += 1
            self._crc = message_check(self._crc, f.data)
            text_bytes += len(f.data)
        data = w.end(message_end, self._crc)
        return Batch(data, text_bytes, len(frames), fallback, model_tokens, message_end, self._crc,
                     sum(f.degraded for f in frames))

    def _emit(self, n: int) -> Frames[Frame]:
        if self.cancel is not None:
            self.cancel.check()
        p = self.parts
        tokens, self._tokens = self._tokens[:n], self._tokens[n:]
        data = p.tokenizer.token_bytes(tokens)
        reset, self._reset_next = self._reset_next, False
        if self.fallback_only:
            self._state = restart_context(self._state)
            return self._fallback_frame(n, data, reset, degraded=True)
        state = start_context(p, self._state, p.frame)
        plan = yield from plan_frame(p, state, tokens, self.min_stages, p.stages, with_eos=False)
        self.model_tokens += n
        bits = plan.token_bits + plan.n_stages * p.code_bits
        if self.min_stages == 0 and bits > FALLBACK_TRY_BITS_PER_BYTE * len(data):
            fb = self._fallback_frame(n, data, reset, degraded=False)
            if 8 * len(fb.payload) + 8 < bits:
                self._state = restart_context(plan.state)
                return fb
        self._state = plan.state
        symbols = tuple(plan.ranges)
        return Frame(FrameKind.MODEL, n, data, tuple(plan.codes), symbols, reset=reset)

    def _fallback_frame(self, n_tokens: int, data: bytes, reset: bool, degraded: bool) -> Frame:
        """The frame's bytes, zstd-compressed with the dictionary when that is smaller (the caller
        that sends it restarts the context: the next frame starts afresh)."""
        z = self._fallback.compress(data)
        kind, payload = (FrameKind.ZSTD, z) if len(z) < len(data) else (FrameKind.RAW, data)
        return Frame(kind, n_tokens, data, payload=payload, reset=reset, degraded=degraded)


class StreamDecoder:
    """One stream's decoder: batches in order -> text. A batch that does not decode raises its
    ``CodecError`` (``IntegrityError`` when it fails its check); the message's later batches then
    raise the same kind (``reset()`` starts over at a message start)."""

    def __init__(self, parts: Parts, fallback: Fallback, tier: Tier):
        no_semantic(parts, tier)
        self.parts, self._fallback, self.tier = parts, fallback, tier
        self.reset()

    def reset(self) -> None:
        """Forget the current message: the next batch starts a new one."""
        self._state: ContextState | None = None
        self._crc = CHECK_SEED
        errors = "strict" if self.tier == Tier.EXACT else "replace"
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors)
        self._broken: CodecError | None = None

    def push(self, batch: bytes, *, max_bytes: int | None = None, cancel: Cancel | None = None) -> Decoded:
        """-> the text complete after ``batch`` and whether it ended the message. ``TooLargeError``
        when the batch decodes to more than ``max_bytes`` UTF-8 bytes (decoding stops within a
        frame of the limit); ``cancel`` is checked before each frame (``CancelledError``)."""
        if self._broken is not None:
            raise type(self._broken)(f"an earlier batch of this message failed: {self._broken}")
        try:
            decoded = self._decode(bytes(batch), max_bytes, cancel or Cancel())
        except CodecError as e:
            self._broken = e
            raise
        if decoded.message_end:
            self.reset()
        return decoded

    def _decode(self, batch: bytes, max_bytes: int | None, cancel: Cancel) -> Decoded:
        p, exact = self.parts, self.tier == Tier.EXACT
        r = BatchReader(batch, p.frame, p.stages, p.codes)
        out = bytearray()
        crc, frames, fallback = self._crc, 0, 0
        while True:
            item = r.item()
            if item == Item.RESET:
                self._state = restart_context(self._state)
                continue
            if item in (Item.END_BATCH, Item.END_MESSAGE):
                end = item == Item.END_MESSAGE
                if exact and not check_matches(r.check(end), crc, end):
                    raise IntegrityError("frame batch failed its integrity check")
                self._crc = crc
                try:
                    text = self._utf8.decode(bytes(out), final=end)
                except UnicodeDecodeError as e:
                    raise IntegrityError(f"frame batch decodes to invalid UTF-8: {e.reason}") from None
                return Decoded(text, end, frames, fallback)
            cancel.check()
            frames += 1
            if item == Item.MODEL:
                n, codes = r.model_frame_header(exact)
                state = start_context(p, self._state, p.frame)
                if exact:
                    tokens, _ = decode_tokens(p, r.dec, state, codes, n, stop_at_eos=False)
                else:
                    tokens = generate_tokens(p, state, codes, n)
                self._state = state
                data = p.tokenizer.token_bytes(tokens)
            else:
                payload = r.fallback_payload()
                if item == Item.RAW:
                    data = payload
                else:
                    left = None if max_bytes is None else max_bytes - len(out)
                    data = self._fallback.decompress(payload, left)
                self._state = restart_context(self._state)
                fallback += 1
            crc = message_check(crc, data)
            out += data
            if max_bytes is not None and len(out) > max_bytes:
                raise TooLargeError(f"frame batch decodes to more than {max_bytes} bytes")
