"""Standalone message blobs: ``compress(text) -> bytes`` and back.

Header (2 bytes): 3 bits of magic (``0b101``), 3 bits of format version, 2 bits of mode, then an
8-bit model tag (the first byte of the model id; the message check tells models with the same tag
apart). Two bytes are 0.06 bpb of a 250-byte message. Modes:

- ``EXACT``: arithmetic-coded. Per frame of up to F tokens: the stage count n (fixed table); if
  n > 0, n codes of log2(K) bits and the frame's length and last-frame flag (log2(2F) bits), then
  the frame's tokens conditioned on its codes; if n = 0, tokens under the plain decoder until
  ``<eos>`` or F tokens. Then a ``CHECK_BITS`` check of the text. Termination is bit-granular.
- ``SEMANTIC``: arithmetic-coded: n, then per frame its token count (0 ends) and n codes. Retired
  in format version 4: it is read from version-2 and -3 blobs (data already written) and never
  written; a version-4 blob with this mode is malformed.
- ``ZSTD``: the text compressed with the bundle's dictionary (fallback.py). ``RAW``: UTF-8 bytes.
  Both end with a 2-byte check of the text (``FALLBACK_CHECK_BITS``, big-endian), so a corrupt
  fallback blob fails loudly (format version 3; version-2 fallback blobs, which had none, decode
  only when the caller asks for ``legacy``: unchecked, a header bit flip could pass them off).

Version 4 is version 3 without the SEMANTIC mode: every blob written is version 4.
"""

from __future__ import annotations

import enum

import numpy as np

from rvqstream.models.coding import (
    ContextState,
    OutputLimit,
    Parts,
    Steps,
    choose_plan,
    decode_token_steps,
    encode_plan,
    exact_stage_table,
    generate_tokens,
    max_tokens,
    run_steps,
    start_context,
    text_check,
)
from rvqstream.models.entropy import ArithmeticDecoder, ArithmeticEncoder
from rvqstream.models.errors import (
    Cancel,
    IntegrityError,
    MalformedError,
    TooLargeError,
    TruncatedError,
    UnknownModelError,
)
from rvqstream.models.fallback import Fallback
from rvqstream.models.tokenizer import EOS_ID

MAGIC = 0b101 << 5
VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
LAST_SEMANTIC_VERSION = 3    # the semantic text tier is retired from version 4 on
HEADER_BYTES = 2
CHECK_BITS = 12
FALLBACK_CHECK_BITS = 16


class Mode(enum.IntEnum):
    EXACT = 0
    SEMANTIC = 1
    ZSTD = 2
    RAW = 3


def model_tag(model_id: str) -> int:
    return int(model_id[:2], 16)


def header(mode: Mode, model_id: str) -> bytes:
    return bytes([MAGIC | (VERSION << 2) | int(mode), model_tag(model_id)])


def parse_header(blob: bytes) -> tuple[Mode, int]:
    """-> (mode, model tag); ``TruncatedError`` if too short, ``MalformedError`` on a bad
    magic or version."""
    mode, tag, _ = parse_header_version(blob)
    return mode, tag


def parse_header_version(blob: bytes) -> tuple[Mode, int, int]:
    """-> (mode, model tag, format version); errors as ``parse_header``."""
    if len(blob) < HEADER_BYTES:
        raise TruncatedError(f"blob is {len(blob)} bytes: shorter than the {HEADER_BYTES}-byte header")
    if blob[0] & 0xE0 != MAGIC:
        raise MalformedError("not an rvqstream blob (bad magic)")
    version = (blob[0] >> 2) & 0x07
    if version not in READABLE_VERSIONS:
        raise MalformedError(f"unsupported rvqstream blob format version {version} "
                             f"(this build reads {', '.join(map(str, READABLE_VERSIONS))})")
    return Mode(blob[0] & 0x03), blob[1], version


class BlobCoder:
    def __init__(self, parts: Parts, model_id: str):
        self.parts, self.model_id = parts, model_id
        self.fallback_coder = Fallback(parts.zdict)
        self._stage_cum = exact_stage_table(parts.stages)
        self.tag = model_tag(model_id)

    # -- encoding -------------------------------------------------------------------------------
    def compress(self, text: str, stages: int | None, cancel: Cancel) -> bytes:
        """The smallest of the exact-tier blob (at least ``stages`` RVQ stages a frame) and the
        fallback blob of ``text``."""
        best = self.fallback(text)
        payload = self._exact(text, stages or 0, cancel)
        if payload is not None and HEADER_BYTES + len(payload) < len(best):
            best = header(Mode.EXACT, self.model_id) + payload
        return best

    def fallback(self, text: str) -> bytes:
        data = text.encode("utf-8")
        z = self.fallback_coder.compress(data)
        check = text_check(data, FALLBACK_CHECK_BITS).to_bytes(2, "big")
        if len(z) < len(data):
            return header(Mode.ZSTD, self.model_id) + z + check
        return header(Mode.RAW, self.model_id) + data + check

    def _exact(self, text: str, min_stages: int, cancel: Cancel) -> bytes | None:
        p = self.parts
        tokens = p.tokenizer.encode(text)
        enc = ArithmeticEncoder()
        state, i, F = None, 0, p.frame
        while True:
            cancel.check()
            chunk = tokens[i:i + F]
            i += len(chunk)
            last = i >= len(tokens)
            state = start_context(p, state, F)
            # the message ends in this frame with <eos> unless the frame carries stages
            eos = last and len(chunk) < F and (min_stages == 0 or not chunk)
            plan = choose_plan(p, state, chunk, min_stages if chunk else 0, p.stages if chunk else 0,
                               with_eos=eos, extra_bits_with_stages=np.log2(2 * F))
            enc.encode_symbol(self._stage_cum, plan.n_stages)
            if plan.n_stages:
                for c in plan.codes:
                    enc.encode_uniform(c, p.codes)
                enc.encode_uniform(len(chunk) - 1 + (F if last else 0), 2 * F)
                encode_plan(enc, plan)
                state = plan.state
                if last:
                    break
            else:
                encode_plan(enc, plan)
                state = plan.state
                if eos:
                    break
                if last:   # a full last frame: its <eos> opens one more (empty) frame
                    tokens = tokens + [EOS_ID]   # sentinel, never coded as a token of a frame
                    state = start_context(p, state, F)
                    plan = choose_plan(p, state, [], 0, 0, with_eos=True)
                    enc.encode_symbol(self._stage_cum, 0)
                    encode_plan(enc, plan)
                    break
        enc.encode_uniform(text_check(text.encode("utf-8"), CHECK_BITS), 1 << CHECK_BITS)
        payload = enc.finish()
        return payload if len(tokens) <= max_tokens(len(payload)) else None

    # -- decoding -------------------------------------------------------------------------------
    def decompress(self, blob: bytes, max_bytes: int | None, cancel: Cancel, legacy: bool = False) -> str:
        mode, tag, version = parse_header_version(blob)
        if tag != self.tag:
            raise UnknownModelError(f"blob is for model tag {tag:#04x}, not this codec's model "
                                    f"{self.model_id[:12]} (tag {self.tag:#04x})")
        payload = bytes(blob[HEADER_BYTES:])
        if mode in (Mode.RAW, Mode.ZSTD):
            if version < 3 and not legacy:
                raise MalformedError(f"a format-{version} fallback blob has no check: refused unless "
                                     "read as legacy data")
            cancel.check()
            return self._decode_fallback(mode, payload, version >= 3, max_bytes)
        if mode == Mode.SEMANTIC:
            if version > LAST_SEMANTIC_VERSION:
                raise MalformedError(f"mode SEMANTIC does not exist in blob format version {version}: the "
                                     f"semantic text tier was retired after version {LAST_SEMANTIC_VERSION}")
            return self._decode_semantic(payload, max_bytes, cancel)
        return self._decode_exact(payload, max_bytes, cancel)

    def _decode_fallback(self, mode: Mode, payload: bytes, checked: bool, max_bytes: int | None) -> str:
        if checked:
            if len(payload) < 2:
                raise TruncatedError("fallback blob is shorter than its check")
            payload, check = payload[:-2], int.from_bytes(payload[-2:], "big")
        if mode == Mode.ZSTD:
            data = self.fallback_coder.decompress(payload, max_bytes)
        elif max_bytes is not None and len(payload) > max_bytes:
            raise TooLargeError(f"raw blob holds {len(payload)} bytes, more than {max_bytes}")
        else:
            data = payload
        if checked and text_check(data, FALLBACK_CHECK_BITS) != check:
            raise IntegrityError("fallback blob failed its integrity check")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError("fallback blob decodes to invalid UTF-8") from None

    def _decode_exact(self, payload: bytes, max_bytes: int | None, cancel: Cancel) -> str:
        return run_steps(self.parts, self.exact_steps(payload, max_bytes, cancel))

    def exact_steps(self, payload: bytes, max_bytes: int | None, cancel: Cancel,
                    state: ContextState | None = None) -> Steps[str]:
        """The exact-tier payload's decoding as model steps (``coding.Steps``), from ``state``
        (fresh when None: a batched driver lends one of its rows)."""
        if not payload:   # the encoder never chooses the model for a payload of nothing
            raise TruncatedError("exact-tier blob has no payload: it was cut after the header")
        p, F = self.parts, self.parts.frame
        dec = ArithmeticDecoder(payload)
        limit = OutputLimit(len(payload), max_bytes)
        data = bytearray()
        while True:
            cancel.check()
            state = start_context(p, state, F)
            n = dec.decode_symbol(self._stage_cum)
            if n:
                codes = [dec.decode_uniform(p.codes) for _ in range(n)]
                v = dec.decode_uniform(2 * F)
                toks, _ = yield from decode_token_steps(p, dec, state, codes, v % F + 1, stop_at_eos=False)
                end = v >= F
            else:
                toks, end = yield from decode_token_steps(p, dec, state, [], F, stop_at_eos=True)
            frame = p.tokenizer.token_bytes(toks)
            data += frame
            limit.add(len(toks), len(frame))
            if end:
                break
        if dec.decode_uniform(1 << CHECK_BITS) != text_check(data, CHECK_BITS):
            raise IntegrityError("exact-tier blob failed its integrity check")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError("exact-tier blob decodes to invalid UTF-8") from None

    def _decode_semantic(self, payload: bytes, max_bytes: int | None, cancel: Cancel) -> str:
        """A semantic-tier payload of format version 2 or 3 (data written before the tier was
        retired): text generated from the frames' codes."""
        p = self.parts
        if not p.stages:
            raise MalformedError("semantic-tier blob for a model without RVQ codes")
        dec = ArithmeticDecoder(payload)
        limit = OutputLimit(len(payload), max_bytes)
        stages = dec.decode_uniform(p.stages) + 1
        data, state = bytearray(), None
        while True:
            cancel.check()
            k = dec.decode_uniform(p.frame + 1)
            if k == 0:
                break
            codes = [dec.decode_uniform(p.codes) for _ in range(stages)]
            state = start_context(p, state, p.frame)
            frame = p.tokenizer.token_bytes(generate_tokens(p, state, codes, k))
            data += frame
            limit.add(k, len(frame))
        return data.decode("utf-8", errors="replace")
