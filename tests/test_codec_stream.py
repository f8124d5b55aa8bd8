"""Streaming: chunked input decodes to the same text as one-shot input; frame batches carry
checks; decoding is identical across ONNX Runtime thread counts and graph-optimization levels.
Exact-tier tests run with each shipped bundle (the integer default and the float model); RVQ
stages (searchable layers) are the float bundle's."""

from __future__ import annotations

import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvqstream.models import Codec, CodecError, IntegrityError, SessionSettings
from tests.conftest import BUNDLE_DIRS

TEXT = ("Edge devices sync notes over thin links. The server cuts text into frames, codes each one "
        "under the decoder's distribution, and a subscriber decodes them locally, byte for byte. "
        "Ünïcödé, emoji 🎉 and CJK 日本語 must survive any chunking.\n")


@pytest.fixture(scope="module")
def codec(each_codec) -> Codec:
    """Each shipped bundle in turn: these tests are about the exact tier in general."""
    return each_codec


def _stream(codec, chunks, stages=None, flush_every=0, encoder=None):
    """Batches of one message written as ``chunks``, flushed every ``flush_every`` chunks."""
    enc = encoder or codec.encoder(stages=stages)
    batches = []
    for i, c in enumerate(chunks):
        enc.push(c)
        if flush_every and i % flush_every == flush_every - 1 and (b := enc.flush()) is not None:
            batches.append(b)
    batches.append(enc.end_message())
    return batches


def _decode(codec, batches):
    dec = codec.decoder()
    out = [dec.push(b.data) for b in batches]
    assert [d.message_end for d in out] == [False] * (len(out) - 1) + [True]
    return "".join(d.text for d in out)


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


def test_a_batch_holds_every_frame_ready_at_its_flush(codec):
    enc = codec.encoder()
    held = enc.push(TEXT)
    assert held == len(codec.parts.tokenizer.encode(TEXT)) // codec.parts.frame
    assert enc.pending > 0
    batch = enc.flush()
    assert batch.frames > held and batch.text_bytes == len(TEXT.encode()) and not batch.message_end
    assert enc.pending == 0 and enc.flush() is None
    end = enc.end_message()            # nothing held: a batch with no frame closes the message
    assert end.frames == 0 and end.message_end and len(end.data) <= 3
    dec = codec.decoder()
    assert dec.push(batch.data).text == TEXT
    assert dec.push(end.data).message_end


def test_several_messages_in_one_stream(codec):
    enc, dec = codec.encoder(), codec.decoder()
    for m in ["first message.", "", "second one, a little longer than the first.", "🎉"]:
        enc.push(m)
        d = dec.push(enc.end_message().data)
        assert d.text == m and d.message_end


def test_resumed_message_continues_in_a_fresh_context_under_the_same_check(codec):
    first = codec.encoder()
    first.push(TEXT[:70])
    b1 = first.flush()
    second = codec.encoder()             # another encoder continues the message (a reconnect)
    second.resume_message(b1.crc)
    second.push(TEXT[70:])
    b2 = second.end_message()
    dec = codec.decoder()
    assert dec.push(b1.data).text + dec.push(b2.data).text == TEXT
    wrong = codec.encoder()
    wrong.resume_message(b1.crc ^ 1)     # a continuation under another check value fails it
    wrong.push(TEXT[70:])
    dec = codec.decoder()
    dec.push(b1.data)
    with pytest.raises(IntegrityError):
        dec.push(wrong.end_message().data)


def test_exact_stream_with_searchable_layer(float_codec):
    codec = float_codec
    plain = _stream(codec, [TEXT])
    layered = _stream(codec, [TEXT], stages=2)
    assert sum(len(b.data) for b in layered) > sum(len(b.data) for b in plain)
    assert _decode(codec, layered) == TEXT


def test_fallback_only_sheds_model_work_and_stays_exact(codec):
    enc = codec.encoder()
    enc.push(TEXT[:60])
    enc.fallback_only = True          # a scheduler under pressure
    tokens = enc.model_tokens
    enc.push(TEXT[60:140])
    assert enc.model_tokens == tokens
    enc.fallback_only = False
    enc.push(TEXT[140:])
    batch = enc.end_message()
    assert 0 < batch.degraded_frames <= batch.fallback_frames
    assert _decode(codec, [batch]) == TEXT


@pytest.mark.parametrize("fallback_only", [False, True], ids=["model", "fallback"])
def test_corrupt_batch_raises_a_codec_error_and_next_message_recovers(codec, fallback_only):
    enc = codec.encoder()
    enc.fallback_only = fallback_only
    batches = _stream(codec, [TEXT[:80], TEXT[80:]], flush_every=1, encoder=enc)
    failing, kinds = None, set()
    for i in range(len(batches[0].data)):
        for bit in (0x01, 0x10, 0x80):
            bad = bytearray(batches[0].data)
            bad[i] ^= bit
            dec = codec.decoder()
            try:
                text = dec.push(bytes(bad)).text + dec.push(batches[1].data).text
            except CodecError as e:
                failing = failing or (bytes(bad), type(e))
                kinds.add(type(e))
                continue
            # a flip in the coder's termination slack changes nothing; any other must fail a check
            assert text == TEXT, f"a flipped bit (byte {i}, {bit:#x}) decoded to {text!r}"
    assert IntegrityError in kinds
    bad, kind = failing
    dec = codec.decoder()
    with pytest.raises(kind):
        dec.push(bad)
    with pytest.raises(kind):
        dec.push(batches[1].data)        # later batches of the broken message fail too
    dec.reset()
    assert _decode(codec, _stream(codec, ["a fresh message decodes again"])) == "a fresh message decodes again"


def test_garbage_batches_are_rejected(codec):
    dec = codec.decoder()
    for garbage in (b"", b"\xff" * 40, bytes(range(256))):
        dec.reset()
        with pytest.raises(CodecError):
            dec.push(garbage)


LEVELS = [ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.name)
def test_decoding_is_identical_across_threads_and_optimization_levels(codec, threads, level):
    texts = [TEXT, "Short note.", "def f(x):\n    return x * 2\n" * 3]
    blobs = [codec.compress(t) for t in texts]
    batches = _stream(codec, [TEXT[i:i + 9] for i in range(0, len(TEXT), 9)], flush_every=3)
    other = Codec.load(BUNDLE_DIRS[codec.kind], settings=SessionSettings(threads=threads, optimization=level))
    assert [other.decompress(b) for b in blobs] == texts
    assert _decode(other, batches) == TEXT
    sa, sb = codec.parts.step, other.parts.step
    a, b = sa.new_state(), sb.new_state()
    for tok in codec.parts.tokenizer.encode(TEXT)[:24]:
        la, ka = sa.step(a, None, 0)
        lb, kb = sb.step(b, None, 0)
        assert (la == lb).all()
        sa.advance(a, tok, ka)
        sb.advance(b, tok, kb)
