"""The codec's errors: every failure to decode untrusted bytes is a typed ``CodecError``, decoded
output is capped before it is produced, work stops on a ``Cancel``, and memory and time stay
bounded (a held pre-token cut); the model cache refuses ids that are not model ids. Exact-tier tests
run with each shipped bundle (the integer default and the float model); old semantic-tier blobs
(format version 3, the retired tier) are read by the float bundle."""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest
import zstandard
from conftest import legacy_semantic_blobs

from rvqstream.client.cache import ModelCache
from rvqstream.models import (
    Cancel,
    CancelledError,
    Codec,
    CodecError,
    IntegrityError,
    MalformedError,
    TooLargeError,
    TruncatedError,
    UnknownModelError,
    blob,
    coding,
)
from rvqstream.models.batch import BatchWriter, Item, message_check
from rvqstream.models.blob import HEADER_BYTES, Mode, header
from rvqstream.models.bundle import check_model_id, valid_model_id
from rvqstream.models.coding import CHECK_SEED, text_check
from rvqstream.models.stream import MAX_HELD_CHARS
from rvqstream.models.tokenizer import EOS_ID

PROSE = ("Edge devices sync notes over thin links. The server cuts text into frames, codes each one "
         "under the decoder's distribution, and a subscriber decodes them locally, byte for byte. ")
LONG = (PROSE + "A field team writes reports on tablets far from any tower; each report waits in a queue "
        "until the satellite window opens for a few minutes at dawn. Every byte counts then, so the "
        "notes travel as codes of a small language model rather than as plain text, and the depot "
        "rebuilds them exactly. When the model on one side differs from the other, the message check "
        "fails loudly and the text is fetched again in a plain compressed form. Operators like that "
        "they can search the archive by meaning: the first stages of every frame say what it is about, "
        "while the later ones pin down the exact wording, punctuation and numbers like 1492 or 3.14.")
BOMB_BYTES = 1 << 30
LIMIT = 1 << 20


# (bundle kind, tier): the integer model codes the exact tier only
MODEL_TIERS = [("intlm", "exact"), ("float", "exact")]


@pytest.fixture(scope="module")
def codec(each_codec) -> Codec:
    """Each shipped bundle in turn: these tests are about the exact tier in general."""
    return each_codec


@pytest.fixture(scope="module")
def bomb(codec) -> bytes:
    """A zstd fallback payload (with the bundle's dictionary) of 32 KiB that expands to 1 GiB."""
    cctx = zstandard.ZstdCompressor(level=3, dict_data=zstandard.ZstdCompressionDict(codec.parts.zdict),
                                    write_checksum=False, write_content_size=False, write_dict_id=False)
    cobj = cctx.compressobj()
    zeros = bytes(1 << 20)
    frame = b"".join([cobj.compress(zeros) for _ in range(BOMB_BYTES // len(zeros))] + [cobj.flush()])
    assert frame[:4] == b"\x28\xb5\x2f\xfd" and len(frame) < 40 << 10
    return frame[4:]


def _raw_blob(codec, data: bytes, check: int | None = None) -> bytes:
    check = text_check(data, blob.FALLBACK_CHECK_BITS) if check is None else check
    return header(Mode.RAW, codec.model_id) + data + check.to_bytes(2, "big")


def test_error_kinds():
    for kind in (TruncatedError, MalformedError, IntegrityError, UnknownModelError, TooLargeError,
                 CancelledError):
        assert issubclass(kind, CodecError)
        assert not issubclass(kind, (ValueError, EOFError))


# -- blobs --------------------------------------------------------------------------------------

def test_truncated_blobs(codec):
    exact = codec.compress(PROSE)
    assert codec.blob_mode(exact) == Mode.EXACT
    zstd = codec.fallback(PROSE * 4)
    assert codec.blob_mode(zstd) == Mode.ZSTD
    for data in (b"", exact[:1], exact[:HEADER_BYTES], _raw_blob(codec, b"")[:HEADER_BYTES + 1],
                 zstd[:len(zstd) // 2] + zstd[-2:]):
        with pytest.raises(TruncatedError):
            codec.decompress(data)


def test_malformed_blobs(codec):
    exact = codec.compress(PROSE)
    with pytest.raises(MalformedError, match="magic"):
        codec.decompress(b"\x00" + exact[1:])
    with pytest.raises(MalformedError, match="version"):
        codec.decompress(bytes([(exact[0] & ~0x1C) | (5 << 2)]) + exact[1:])
    zstd = bytearray(codec.fallback(PROSE * 4))
    zstd[HEADER_BYTES] ^= 0xFF                         # the zstd frame header
    with pytest.raises(MalformedError, match="zstd"):
        codec.decompress(bytes(zstd))


def test_blob_for_another_model(codec):
    exact = codec.compress(PROSE)
    with pytest.raises(UnknownModelError):
        codec.decompress(exact[:1] + bytes([exact[1] ^ 0x01]) + exact[2:])


def test_corrupt_payloads_fail_their_check(codec):
    with pytest.raises(IntegrityError, match="check"):
        codec.decompress(_raw_blob(codec, b"some text", check=text_check(b"some text", 16) ^ 1))
    with pytest.raises(IntegrityError, match="UTF-8"):
        codec.decompress(_raw_blob(codec, b"\xff\xfe"))
    exact = codec.compress(PROSE)
    # a flip in the last bits hits the 12-bit check, or the termination (then the coder runs out)
    with pytest.raises((IntegrityError, TruncatedError)):
        codec.decompress(exact[:-1] + bytes([exact[-1] ^ 0x40]))


def test_zstd_bomb_blob_is_too_large_and_never_expanded(codec, bomb):
    data = header(Mode.ZSTD, codec.model_id) + bomb + b"\0\0"
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError):
            codec.decompress(data, max_bytes=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20
    with pytest.raises(TooLargeError):                 # no limit given: the fallback coder's own cap
        codec.decompress(data)


def test_raw_blob_over_the_limit(codec):
    data = b"x" * 1000
    assert codec.decompress(_raw_blob(codec, data), max_bytes=1000) == data.decode()
    with pytest.raises(TooLargeError):
        codec.decompress(_raw_blob(codec, data), max_bytes=999)


def test_every_token_but_eos_is_at_least_one_byte(codec):
    """So a byte limit caps the tokens a decoder makes as well."""
    tok = codec.parts.tokenizer
    assert tok.token_bytes([EOS_ID]) == b""
    assert all(len(tok.token_bytes([i])) >= 1 for i in range(tok.vocab_size) if i != EOS_ID)


@pytest.mark.parametrize("kind, tier", [*MODEL_TIERS, ("float", "semantic")])
def test_model_blobs_stop_at_the_byte_limit(codecs, kind, tier):
    codec = codecs[kind]
    data = (codec.compress(LONG) if tier == "exact"       # semantic: the longest old (version-3) blob
            else max((b for b, _ in legacy_semantic_blobs()), key=len))
    assert codec.blob_mode(data) == Mode[tier.upper()]
    out = codec.decompress(data)
    size = len(out.encode())
    assert codec.decompress(data, max_bytes=size) == out
    with pytest.raises(TooLargeError):
        codec.decompress(data, max_bytes=size - 1)
    with pytest.raises(TooLargeError):
        codec.decompress(data, max_bytes=20)


@pytest.mark.parametrize("kind, tier", MODEL_TIERS)
def test_model_blobs_over_the_token_cap_are_malformed(codecs, kind, tier, monkeypatch):
    codec = codecs[kind]
    text = LONG + LONG.upper()
    data = codec.compress(text)
    assert codec.blob_mode(data) == Mode[tier.upper()]
    monkeypatch.setattr(coding, "TOKENS_PER_BIT", 0)   # the cap is now 256 tokens, whatever the size
    assert len(codec.parts.tokenizer.encode(text)) > coding.max_tokens(len(data))
    with pytest.raises(MalformedError, match="tokens"):
        codec.decompress(data)


# -- cancellation -------------------------------------------------------------------------------

class CountingCancel(Cancel):
    """Counts its checks; cancels itself at check number ``after`` (never when None)."""

    def __init__(self, after: int | None = None):
        super().__init__()
        self.checks, self.after = 0, after

    def check(self) -> None:
        self.checks += 1
        if self.checks == self.after:
            self.cancel()
        super().check()


def test_cancelled_work_raises(codec):
    text = LONG[:500]
    frames = -(-len(codec.parts.tokenizer.encode(text)) // codec.parts.frame)
    gone = Cancel(deadline=time.monotonic() - 1)
    with pytest.raises(CancelledError):
        codec.compress(text, cancel=gone)
    data = codec.compress(text)
    counting = CountingCancel()
    codec.decompress(data, cancel=counting)
    assert counting.checks >= frames                    # at least once per frame
    with pytest.raises(CancelledError):
        codec.decompress(data, cancel=CountingCancel(after=frames // 2))
    counting = CountingCancel()
    codec.compress(text, cancel=counting)
    assert counting.checks >= frames
    with pytest.raises(CancelledError):
        codec.decompress(codec.fallback(text), cancel=gone)


def test_cancelled_stream_work_raises_and_keeps_what_is_held(codec):
    text = LONG[:500]
    frames = -(-len(codec.parts.tokenizer.encode(text)) // codec.parts.frame)
    cancel = Cancel()
    enc = codec.encoder(cancel=cancel)
    cancel.cancel()
    with pytest.raises(CancelledError):
        enc.push(text)
    enc.cancel = None                                  # a later caller goes on: nothing was lost
    batch = enc.end_message()
    assert codec.decoder().push(batch.data).text == text
    counting = CountingCancel()
    assert codec.decoder().push(batch.data, cancel=counting).text == text
    assert counting.checks >= frames
    dec = codec.decoder()
    with pytest.raises(CancelledError):
        dec.push(batch.data, cancel=CountingCancel(after=2))


# -- stream decoders ----------------------------------------------------------------------------

def _fallback_batch(codec, item: Item, payload: bytes, crc: int) -> bytes:
    p = codec.parts
    w = BatchWriter(p.frame, p.stages, p.codes)
    w.fallback_frame(item, payload)
    return w.end(True, crc)


def test_stream_errors_keep_their_kind_and_break_the_message(codec):
    dec = codec.decoder()
    with pytest.raises(TruncatedError):
        dec.push(b"")
    with pytest.raises(TruncatedError, match="earlier batch"):   # the message stays broken
        dec.push(codec.encoder().end_message().data)
    bad = _fallback_batch(codec, Item.RAW, b"text", message_check(CHECK_SEED, b"text") ^ 1)
    dec = codec.decoder()
    with pytest.raises(IntegrityError):
        dec.push(bad)
    invalid = b"\xff\xfe"
    with pytest.raises(IntegrityError, match="UTF-8"):
        codec.decoder().push(_fallback_batch(codec, Item.RAW, invalid, message_check(CHECK_SEED, invalid)))


def test_stream_decoder_lets_bugs_through(codec, monkeypatch):
    enc = codec.encoder()
    enc.push(PROSE)
    batch = enc.end_message()

    def broken(ids):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(codec.parts.tokenizer, "token_bytes", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        codec.decoder().push(batch.data)


def test_stream_batches_stop_at_the_byte_limit(codec, bomb):
    enc = codec.encoder()
    enc.push(LONG[:500])
    batch = enc.end_message()
    size = len(LONG[:500].encode())
    assert codec.decoder().push(batch.data, max_bytes=size).text == LONG[:500]
    with pytest.raises(TooLargeError):
        codec.decoder().push(batch.data, max_bytes=size - 1)
    data = _fallback_batch(codec, Item.ZSTD, bomb, 0)   # the check comes after the frame: the limit stops it first
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError):
            codec.decoder().push(data, max_bytes=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20
    with pytest.raises(TooLargeError):
        codec.decoder().push(data)


def test_stream_batches_over_the_token_cap_are_malformed(codec, monkeypatch):
    enc = codec.encoder()
    enc.push(LONG + LONG.upper())
    batch = enc.end_message()
    monkeypatch.setattr(coding, "TOKENS_PER_BIT", 0)
    with pytest.raises(MalformedError, match="tokens"):
        codec.decoder().push(batch.data)


# -- bounded work -------------------------------------------------------------------------------

def test_split_final_cuts_a_long_tail(codec):
    tok = codec.parts.tokenizer
    assert tok.split_final("hello wor") == ("hello", " wor")
    assert tok.split_final("hello wor", 3) == ("hello wo", "r")
    assert tok.split_final("=" * 10) == ("", "=" * 10)
    assert tok.split_final("=" * 10, 10) == ("", "=" * 10)
    assert tok.split_final("=" * 11, 10) == ("=" * 10, "=")


def test_text_with_no_word_break_streams_in_linear_time(codec):
    """2 MiB with no pre-token break, pushed 1 KiB at a time (fallback frames: the tokenizer's part
    alone), round-trips; the encoder never holds more than MAX_HELD_CHARS characters."""
    text = "=" * (2 << 20)
    enc = codec.encoder()
    enc.fallback_only = True
    batches = []
    for i in range(0, len(text), 1024):
        enc.push(text[i:i + 1024])
        assert enc.held_chars <= MAX_HELD_CHARS
        if i % (256 << 10) == 0 and (b := enc.flush()) is not None:
            batches.append(b)
    batches.append(enc.end_message())
    dec = codec.decoder()
    assert "".join(dec.push(b.data).text for b in batches) == text


@pytest.mark.parametrize("text", ["=" * 3000, "日本語のテキスト" * 200 + " end", " " * 2500 + "x"])
def test_long_pre_tokens_round_trip_through_the_model(codec, text):
    enc = codec.encoder()
    pieces = [text[i:i + 700] for i in range(0, len(text), 700)]
    for piece in pieces:
        enc.push(piece)
        assert enc.held_chars <= MAX_HELD_CHARS
    assert codec.decoder().push(enc.end_message().data).text == text


# -- model ids and the cache --------------------------------------------------------------------

def test_model_ids(codec):
    assert valid_model_id(codec.model_id) and check_model_id(codec.model_id) == codec.model_id
    for bad in ("", "../victim", "/tmp/x", codec.model_id[:63], codec.model_id.upper(), codec.model_id + "0",
                codec.model_id[:63] + "/", codec.model_id[:63] + "g", codec.model_id + "\n"):
        assert not valid_model_id(bad)
        with pytest.raises(UnknownModelError):
            check_model_id(bad)


def _tree(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_cache_refuses_ids_that_are_not_model_ids(tmp_path, codec):
    root, victim = tmp_path / "cache", tmp_path / "victim"
    root.mkdir()
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    before = _tree(tmp_path)
    cache = ModelCache(root)
    for bad in ("../victim", str(victim), "/tmp/x", codec.model_id[:63], ".."):
        with pytest.raises(UnknownModelError):
            cache.load(bad)
        with pytest.raises(UnknownModelError):
            cache.store(bad, codec.bundle_files())
        with pytest.raises(UnknownModelError):
            cache.path(bad)
    assert _tree(tmp_path) == before


def test_cache_never_follows_an_entry_out_of_its_root(tmp_path, codec):
    root, victim = tmp_path / "cache", tmp_path / "victim"
    root.mkdir()
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    os.symlink(victim, root / codec.model_id)
    cache = ModelCache(root)
    with pytest.raises(UnknownModelError, match="outside"):
        cache.load(codec.model_id)
    with pytest.raises(UnknownModelError, match="outside"):
        cache.store(codec.model_id, codec.bundle_files())
    assert (victim / "precious.txt").read_text() == "keep me"
    assert _tree(root) == [codec.model_id]


def test_cache_round_trip_with_a_valid_id(tmp_path, codec):
    cache = ModelCache(tmp_path / "cache")
    assert cache.load(codec.model_id) is None
    assert cache.store(codec.model_id, codec.bundle_files()).model_id == codec.model_id
    assert cache.path(codec.model_id) == (tmp_path / "cache").resolve() / codec.model_id
    assert cache.load(codec.model_id).model_id == codec.model_id
