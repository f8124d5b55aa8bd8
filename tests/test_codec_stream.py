"""Streaming: chunked input decodes to the same text as one-shot input; frames carry checks;
decoding is identical across ONNX Runtime thread counts and graph-optimization levels."""

from __future__ import annotations

import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvqstream.models import Codec, Frame, FrameKind, IntegrityError, SessionSettings

TEXT = ("Edge devices sync notes over thin links. The server cuts text into frames, codes each one "
        "under the decoder's distribution, and a subscriber decodes them locally, byte for byte. "
        "Ünïcödé, emoji 🎉 and CJK 日本語 must survive any chunking.\n")


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


def _stream(codec, chunks, tier="exact", stages=None, flush_every=0):
    enc = codec.encoder(tier=tier, stages=stages)
    frames = []
    for i, c in enumerate(chunks):
        frames += enc.push(c)
        if flush_every and i % flush_every == flush_every - 1:
            frames += enc.flush()
    frames += enc.end_message()
    return frames


def _decode(codec, frames, tier="exact"):
    dec = codec.decoder(tier=tier)
    return "".join(dec.push(Frame.from_bytes(f.to_bytes())) for f in frames)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 40), min_size=1, max_size=40), st.integers(0, 5))
def test_chunked_equals_one_shot(codec, cuts, flush_every):
    chunks, pos = [], 0
    for c in cuts:
        chunks.append(TEXT[pos:pos + c])
        pos += c
    chunks.append(TEXT[pos:])
    assert _decode(codec, _stream(codec, chunks, flush_every=flush_every)) == TEXT
    assert _decode(codec, _stream(codec, [TEXT])) == TEXT


def test_frames_are_bounded_and_numbered(codec):
    frames = _stream(codec, [TEXT[i:i + 5] for i in range(0, len(TEXT), 5)])
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert frames[0].message_start and frames[-1].message_end
    assert all(f.n_tokens <= codec.parts.frame for f in frames)


def test_several_messages_in_one_stream(codec):
    enc, dec = codec.encoder(), codec.decoder()
    msgs = ["first message.", "", "second one, a little longer than the first.", "🎉"]
    for m in msgs:
        frames = enc.push(m) + enc.end_message()
        assert frames[0].message_start and frames[-1].message_end
        assert "".join(dec.push(f) for f in frames) == m


def test_semantic_stream_decodes_every_stage_count(codec):
    for stages in range(1, codec.parts.stages + 1):
        frames = _stream(codec, [TEXT], tier="semantic", stages=stages)
        assert all(f.n_stages == stages for f in frames if f.n_tokens)
        out = _decode(codec, frames, tier="semantic")
        assert isinstance(out, str) and out


def test_exact_stream_with_searchable_layer(codec):
    frames = _stream(codec, [TEXT], stages=2)
    assert all(f.n_stages >= 2 for f in frames if f.kind == FrameKind.MODEL and f.n_tokens)
    assert _decode(codec, frames) == TEXT


def test_degraded_stream_still_exact(codec):
    enc = codec.encoder(stages=3)
    enc.stages_cap = 0   # a scheduler under pressure
    frames = enc.push(TEXT) + enc.end_message()
    assert all(f.n_stages == 0 for f in frames)
    assert _decode(codec, frames) == TEXT


def test_fallback_only_sheds_model_work_and_stays_exact(codec):
    enc = codec.encoder()
    frames = enc.push(TEXT[:60])
    enc.fallback_only = True          # a scheduler under pressure
    frames += enc.push(TEXT[60:140])
    enc.fallback_only = False
    frames += enc.push(TEXT[140:]) + enc.end_message()
    assert any(f.kind != FrameKind.MODEL for f in frames)
    assert _decode(codec, frames) == TEXT


def test_corrupt_frame_raises_integrity_error_and_next_message_recovers(codec):
    frames = _stream(codec, [TEXT])
    model = next(i for i, f in enumerate(frames) if f.kind == FrameKind.MODEL and len(f.payload) > 2)
    f = frames[model]
    bad = Frame(f.seq, f.kind, f.n_tokens, f.n_stages, bytes([f.payload[0] ^ 0x10]) + f.payload[1:],
                f.message_start, f.message_end)
    dec = codec.decoder()
    with pytest.raises(IntegrityError):
        for g in frames[:model] + [bad] + frames[model + 1:]:
            dec.push(g)
    again = _stream(codec, ["a fresh message decodes again"])
    assert "".join(dec.push(g) for g in again) == "a fresh message decodes again"


def test_frame_bytes_reject_garbage():
    with pytest.raises(EOFError):
        Frame.from_bytes(b"")
    with pytest.raises(ValueError):
        Frame.from_bytes(b"\x00\xff\x01")


LEVELS = [ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.name)
def test_decoding_is_identical_across_threads_and_optimization_levels(codec, threads, level):
    texts = [TEXT, "Short note.", "def f(x):\n    return x * 2\n" * 3]
    blobs = [codec.compress(t) for t in texts]
    frames = _stream(codec, [TEXT[i:i + 9] for i in range(0, len(TEXT), 9)])
    other = Codec.load(settings=SessionSettings(threads=threads, optimization=level))
    assert [other.decompress(b) for b in blobs] == texts
    assert _decode(other, frames) == TEXT
    sa, sb = codec.parts.step, other.parts.step
    a, b = sa.new_state(), sb.new_state()
    for tok in codec.parts.tokenizer.encode(TEXT)[:24]:
        la, ka = sa.step(a, None, 0)
        lb, kb = sb.step(b, None, 0)
        assert (la == lb).all()
        sa.advance(a, tok, ka)
        sb.advance(b, tok, kb)
