"""The edge SDK: model download, verification and cache; local decoding with the integrity
fallback; plain public types; and no server or torch imports."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from google.protobuf.message import Message as ProtoMessage

from rvqstream.client import AsyncClient, Client, ModelCache, RvqstreamError
from rvqstream.models import Codec, CodecError
from rvqstream.models.blob import HEADER_BYTES, Mode

PROSE = ["The quick brown fox jumps over the lazy dog, and then it runs away into the forest.",
         "And God said, Let there be light: and there was light.",
         "The function returns a new list containing the items of the iterable in sorted order."]


def test_model_is_fetched_verified_and_cached(server, cache_dir, registry):
    model_id = registry.default.model_id
    with Client(server.target, cache_dir=cache_dir) as client:
        codec = client.model()
        assert codec.model_id == model_id
        assert client.model(model_id) is codec
    files = {p.name for p in (cache_dir / model_id).iterdir()}
    assert files == set(registry.default.bundle_files())
    server.stop()                                        # from here on only the cache can serve it
    with Client(server.target, cache_dir=cache_dir, reconnect_timeout_s=0) as client:
        assert client.model(model_id).model_id == model_id
        with pytest.raises(RvqstreamError) as err:
            client.models()
        assert err.value.code == "UNAVAILABLE"


def test_a_tampered_cache_is_detected_and_refetched(server, cache_dir, registry):
    model_id = registry.default.model_id
    with Client(server.target, cache_dir=cache_dir) as client:
        client.model(model_id)
    tokenizer = cache_dir / model_id / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes().replace(b'"', b"'", 1))
    assert ModelCache(cache_dir).load(model_id) is None          # removed, not trusted
    assert not (cache_dir / model_id).exists()
    with Client(server.target, cache_dir=cache_dir) as client:
        assert client.model(model_id).model_id == model_id       # fetched again
    assert ModelCache(cache_dir).load(model_id).model_id == model_id


def test_cache_refuses_files_that_do_not_hash_to_the_id(cache_dir, registry):
    files = dict(registry.default.bundle_files())
    files["fallback.zdict"] = files["fallback.zdict"][:-1] + b"\0"
    with pytest.raises(ValueError, match="hash to"):
        ModelCache(cache_dir).store(registry.default.model_id, files)
    assert not (cache_dir / registry.default.model_id).exists()


async def test_integrity_mismatch_refetches_the_message_in_fallback_form(server, cache_dir, registry):
    """A blob that fails its check here (as after a floating-point divergence between machines)
    is replaced by the server's fallback form of the same message."""
    codec = registry.default
    text = next(t for t in PROSE if Codec.blob_mode(codec.compress(t)) == Mode.EXACT)
    async with AsyncClient(server.target, cache_dir=cache_dir) as client:
        await client.publish("integrity", [text])
        stored = await anext(client.subscribe("integrity"))
        assert (stored.text, stored.fallback) == (text, False)
        blob = bytearray(codec.compress(text))
        blob[HEADER_BYTES + (len(blob) - HEADER_BYTES) // 2] ^= 0x5A
        with pytest.raises(CodecError):
            codec.decompress(bytes(blob))
        recovered = await client._decode("integrity", 0, codec.model_id, bytes(blob))
    assert (recovered.offset, recovered.text, recovered.fallback) == (0, text, True)


async def test_async_client_round_trips(server, cache_dir):
    async with AsyncClient(server.target, cache_dir=cache_dir) as client:
        blob = await client.compress(PROSE[0])
        assert await client.decompress(blob) == PROSE[0]

        async def chunks():
            for word in PROSE[1].split(" "):
                yield word + " "

        batches = [b async for b in client.encode_stream(chunks())]
        decoder = await client.decoder(batches[0].model_id, batches[0].tier)
        assert "".join(decoder.push(b.data).text for b in batches) == PROSE[1] + " "
        assert all(b.wire_bytes > len(b.data) for b in batches)
        with pytest.raises(RvqstreamError) as err:
            async for _ in client.encode_stream([b"\xff"]):
                pass
        assert err.value.code == "INVALID_ARGUMENT"


def test_public_results_are_plain_types(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        client.publish("plain", ["one"])
        results = [*client.models(), next(client.subscribe("plain")), client.fetch("plain", 0),
                   *client.encode_stream(["two"])]
    for r in results:
        assert dataclasses.is_dataclass(r)
        for f in dataclasses.fields(r):
            value = getattr(r, f.name)
            assert not isinstance(value, ProtoMessage), (type(r).__name__, f.name)
            if dataclasses.is_dataclass(value):
                assert not any(isinstance(getattr(value, g.name), ProtoMessage)
                               for g in dataclasses.fields(value))


def test_client_imports_neither_server_nor_torch():
    # (grpcio itself imports the bare grpc_health / grpc_reflection packages when they are installed)
    code = ("import sys, rvqstream.client, rvqstream.cli; "
            "bad = [m for m in sys.modules if m.startswith(('rvqstream.server', 'grpc_health.', "
            "'grpc_reflection.', 'grpc_status', 'opentelemetry', 'torch'))]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_backlog_decodes_many_messages_at_once_in_offset_order(server, cache_dir, monkeypatch):
    """Catching up on a channel's backlog: the whole messages already received decode together
    (``Codec.decompress_many``), and every message still comes once, in order, byte-exact."""
    from rvqstream.models import Codec as CodecType

    texts = [f"{i}: " + PROSE[i % len(PROSE)] for i in range(150)]
    calls: list[int] = []
    real = CodecType.decompress_many

    def counted(self, blobs, **kw):
        blobs = list(blobs)
        calls.append(len(blobs))
        return real(self, blobs, **kw)

    async with AsyncClient(server.target, cache_dir=cache_dir) as client:
        await client.publish("backlog", texts)
        monkeypatch.setattr(CodecType, "decompress_many", counted)
        got = []
        async for m in client.subscribe("backlog"):
            got.append((m.offset, m.text))
            if len(got) == len(texts):
                break
    assert got == list(enumerate(texts))
    assert sum(calls) > len(texts) // 2 and max(calls) > 1
