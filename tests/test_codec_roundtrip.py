"""The codec's exact tier round-trips any text, with each shipped bundle (the integer default and the
float model); blobs are versioned and reject bad input clearly. RVQ stages (searchable layers) are
the float bundle's: the integer model refuses them. No model writes the retired semantic tier; the
float bundle reads its old blobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import legacy_semantic_blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvqstream.models import (
    Cancel,
    Codec,
    CodecError,
    IntegrityError,
    MalformedError,
    TruncatedError,
    UnknownModelError,
)
from rvqstream.models.blob import HEADER_BYTES, MAGIC, VERSION, Mode, header
from rvqstream.models.frames import Tier

DATA = Path(__file__).resolve().parents[1] / "data"

SPECIAL = [
    "", "a", " ", "\n", "\x00", "\r\n\r\n", "\t\x0b\x0c", "e\u0301", "🎉👩‍👩‍👧‍👦", "日本語のテキスト",
    "مرحبا بالعالم", "\ufeffBOM", "\U0010ffff", " " * 10_000, "x" * 17, "word " * 200,
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x ** 2  # square\n", "<eos>", "a<eos>b <eos>",
]


@pytest.fixture(scope="module")
def codec(each_codec) -> Codec:
    """Each shipped bundle in turn: these tests are about the exact tier in general."""
    return each_codec


@pytest.mark.parametrize("text", SPECIAL)
def test_exact_roundtrip_special(codec, text):
    blob = codec.compress(text)
    assert codec.decompress(blob) == text
    assert len(blob) <= len(codec.fallback(text))


@pytest.mark.parametrize("stages", [1, 2, 8])
def test_exact_roundtrip_with_searchable_stages(float_codec, stages):
    text = "Searchable layers carry RVQ codes in every frame of the exact tier, and still round-trip."
    blob = float_codec.compress(text, stages=stages)
    assert float_codec.decompress(blob) == text


def test_every_model_writes_the_exact_tier_only(int_codec, float_codec):
    assert int_codec.parts.stages == 0 and int_codec.tiers == float_codec.tiers == (Tier.EXACT,)
    assert int_codec.read_tiers == (Tier.EXACT,) and float_codec.read_tiers == (Tier.EXACT, Tier.SEMANTIC)
    text = "The integer model has no RVQ codebooks."
    for codec in (int_codec, float_codec):           # the semantic tier is retired
        with pytest.raises(ValueError, match="retired"):
            codec.compress(text, tier="semantic")
        with pytest.raises(ValueError, match="retired"):
            codec.encoder("semantic")
    for call in (lambda: int_codec.compress(text, stages=1), lambda: int_codec.encoder(stages=1),
                 lambda: int_codec.decoder("semantic")):
        with pytest.raises(ValueError):
            call()
    float_codec.decoder("semantic")                  # old semantic streams are read


def test_semantic_blobs_decode_only_under_old_versions(int_codec, float_codec):
    """Version 4 has no SEMANTIC mode; a version-3 one decodes with the model that wrote it only."""
    old, decoded = legacy_semantic_blobs()[0]
    assert old[0] == MAGIC | (3 << 2) | Mode.SEMANTIC and float_codec.decompress(old) == decoded
    with pytest.raises(MalformedError, match="version 4"):
        float_codec.decompress(header(Mode.SEMANTIC, float_codec.model_id) + old[HEADER_BYTES:])
    with pytest.raises(MalformedError, match="without RVQ codes"):   # under the integer model's tag
        int_codec.decompress(bytes([old[0], int_codec.tag]) + old[HEADER_BYTES:])
    with pytest.raises(CodecError):          # the float model's blob as it is: another tag
        int_codec.decompress(old)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_exact_roundtrip_hypothesis(codec, text):
    assert codec.decompress(codec.compress(text)) == text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=400))
def test_model_coded_exact_roundtrip_hypothesis(codec, text):
    """The model-coded path itself (not a fallback) round-trips."""
    payload = codec._blobs._exact(text, 0, Cancel())
    if payload is not None:
        assert codec.decompress(header(Mode.EXACT, codec.model_id) + payload) == text


def _split(name: str, n: int) -> list[str]:
    path = DATA / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not built (make data)")
    with open(path) as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_exact_roundtrip_corpus_sample(codec, split):
    for text in _split(split, 40):
        assert codec.decompress(codec.compress(text)) == text


def test_header_is_two_bytes_and_self_describing(codec):
    blob = codec.compress("hello there")
    assert blob[0] & 0xFC == MAGIC | (VERSION << 2)
    assert Codec.blob_mode(blob) in set(Mode)
    assert blob[1] == int(codec.model_id[:2], 16)
    assert len(header(Mode.EXACT, codec.model_id)) == HEADER_BYTES == 2


def test_bad_magic_version_model(codec):
    blob = codec.compress("hello there, general kenobi")
    with pytest.raises(MalformedError, match="magic"):
        codec.decompress(b"\x00" + blob[1:])
    with pytest.raises(MalformedError, match="version"):
        codec.decompress(bytes([(blob[0] & ~0x1C) | (5 << 2)]) + blob[1:])
    with pytest.raises(UnknownModelError, match="model"):
        codec.decompress(blob[:1] + bytes([blob[1] ^ 0x01]) + blob[2:])


def test_truncated_is_truncated_error(codec):
    with pytest.raises(TruncatedError):
        codec.decompress(b"")
    with pytest.raises(TruncatedError):
        codec.decompress(codec.compress("abc")[:1])


def test_integrity_error_is_a_codec_error():
    assert issubclass(IntegrityError, CodecError) and not issubclass(IntegrityError, ValueError)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_garbage_never_crashes(codec, data):
    _decode_or_clean_error(codec, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_blobs_never_crash(codec, data):
    text = data.draw(st.sampled_from(SPECIAL[:14] + ["A mutated blob must fail cleanly or decode."]))
    old = [b for b, _ in legacy_semantic_blobs()] if Tier.SEMANTIC in codec.read_tiers else []
    blob = bytearray(data.draw(st.sampled_from([codec.compress(text), *old])))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and blob:
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut" and blob:
            del blob[data.draw(st.integers(0, len(blob) - 1)):]
        else:
            blob.insert(data.draw(st.integers(0, len(blob))), data.draw(st.integers(0, 255)))
    _decode_or_clean_error(codec, bytes(blob))


def _decode_or_clean_error(codec, data: bytes) -> None:
    try:
        out = codec.decompress(data)
    except CodecError:
        return
    assert isinstance(out, str)


def test_fallback_is_safe_across_threads(codec):
    """Server worker threads share one codec: fallback coding must not share zstd contexts."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"frame text number {i} " * (1 + i % 7) for i in range(2000)]
    with ThreadPoolExecutor(4) as ex:
        blobs = list(ex.map(codec.fallback, texts))
    assert [codec.decompress(b) for b in blobs] == texts


@pytest.mark.parametrize("text", ["a" * 300, "\x00\x01\x7f raw bytes 🎉"], ids=["zstd", "raw"])
def test_fallback_blobs_carry_a_check_and_format_2_decodes_as_legacy(codec, text):
    from rvqstream.models.blob import Mode

    blob = codec.fallback(text)
    assert codec.blob_mode(blob) in (Mode.ZSTD, Mode.RAW) and codec.decompress(blob) == text
    for i in range(len(blob)):            # the header too: no flip passes it off as unchecked
        bad = bytearray(blob)
        bad[i] ^= 0x04
        try:
            out = codec.decompress(bytes(bad))
        except CodecError:
            continue
        assert out == text, f"a flipped bit in byte {i} decoded to other text"
    v2 = bytes([(blob[0] & ~0x1C) | (2 << 2)]) + blob[1:-2]     # format 2: the same without a check
    assert codec.decompress(v2, legacy=True) == text
    with pytest.raises(MalformedError):
        codec.decompress(v2)
