"""Unary Compress/Decompress, DecodeStream, GetModel/ListModels, health and reflection, against a
real server; malformed, truncated and unknown-model input get the right status and a clear message."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from rvqstream._proto import codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.models import Codec
from rvqstream.models.blob import HEADER_BYTES, Mode
from rvqstream.models.frames import Tier
from rvqstream.server import ServerConfig
from tests.conftest import ServerThread, legacy_semantic_blobs, legacy_semantic_streams

TEXT = "Grüße aus dem Testlabor — 42 messages, each byte-exact. 🙂"


@pytest.fixture
def stub(channel):
    return codec_pb2_grpc.CodecServiceStub(channel)


def compress(stub, text=TEXT, **kw):
    return stub.Compress(codec_pb2.CompressRequest(text_utf8=text.encode(), **kw))


def status_of(call, *args):
    with pytest.raises(grpc.RpcError) as err:
        call(*args)
    return err.value


def test_compress_decompress_round_trip(stub, registry):
    resp = compress(stub)
    assert resp.model_id == registry.default.model_id
    assert stub.Decompress(codec_pb2.DecompressRequest(blob=resp.blob)).text == TEXT
    assert registry.default.decompress(resp.blob) == TEXT      # the blob is the codec's own format
    assert stub.Decompress(codec_pb2.DecompressRequest(blob=compress(stub, "").blob)).text == ""


def test_semantic_tier_is_read_not_written(stub, registry):
    """The retired semantic tier: Compress refuses it (whichever model is named); old blobs and
    streams of it decode, with no model named for a stream (the float bundle reads the tier)."""
    float_model = registry.for_tier(Tier.SEMANTIC)
    assert float_model.kind == "float" and float_model.model_id != registry.default.model_id
    for model_id in ("", float_model.model_id):
        err = status_of(lambda m: compress(stub, tier=frame_pb2.TIER_SEMANTIC, model_id=m), model_id)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "retired" in err.details()
    for blob, text in legacy_semantic_blobs():
        assert stub.Decompress(codec_pb2.DecompressRequest(blob=blob)).text == text
    for batches, _, text in legacy_semantic_streams():
        reqs = [codec_pb2.DecodeStreamRequest(config=codec_pb2.DecodeConfig(tier=frame_pb2.TIER_SEMANTIC))]
        reqs += [codec_pb2.DecodeStreamRequest(frames=b) for b in batches]
        out = list(stub.DecodeStream(iter(reqs)))
        assert "".join(r.text for r in out) == text and out[-1].message_end


def test_exact_tier_with_stages_on_the_float_model(stub, registry):
    float_model = registry.for_tier(Tier.SEMANTIC)
    exact = compress(stub, model_id=float_model.model_id, stage_count=2)   # exact tier, RVQ stages
    assert exact.model_id == float_model.model_id
    assert stub.Decompress(codec_pb2.DecompressRequest(blob=exact.blob)).text == TEXT
    unnamed = compress(stub, stage_count=2)       # no model named: one whose exact tier has stages
    assert unnamed.model_id == float_model.model_id
    assert compress(stub).model_id == registry.default.model_id


def test_bad_unary_input_gets_clear_statuses(stub, server_config):
    blob = model_coded_blob(stub)
    cases = [
        (codec_pb2.CompressRequest(text_utf8=b"bad \xc3\x28"), stub.Compress,
         grpc.StatusCode.INVALID_ARGUMENT, "not valid UTF-8", "text_utf8"),
        (codec_pb2.CompressRequest(text_utf8=b"x" * (server_config.max_message_bytes + 1)), stub.Compress,
         grpc.StatusCode.INVALID_ARGUMENT, "at most", "text_utf8"),
        (codec_pb2.CompressRequest(text_utf8=b"x", model_id="12" * 32), stub.Compress,
         grpc.StatusCode.NOT_FOUND, "unknown model id", "model_id"),
        (codec_pb2.CompressRequest(text_utf8=b"x", stage_count=64), stub.Compress,
         grpc.StatusCode.INVALID_ARGUMENT, "stage_count", "request.stage_count"),
        (codec_pb2.DecompressRequest(blob=b"\x00\x00\x00\x00"), stub.Decompress,
         grpc.StatusCode.INVALID_ARGUMENT, "bad magic", "blob"),
        (codec_pb2.DecompressRequest(blob=blob[:2]), stub.Decompress,
         grpc.StatusCode.INVALID_ARGUMENT, "truncated", "blob"),
        (codec_pb2.DecompressRequest(blob=bytes([blob[0], blob[1] ^ 0x3F, blob[2] ^ 0xFF]) + blob[3:]),
         stub.Decompress, grpc.StatusCode.NOT_FOUND, "model tag", "blob"),
    ]
    for request, method, code, text, field in cases:
        err = status_of(method, request)
        assert err.code() == code, (request, err.details())
        assert text in err.details()
        status = rpc_status.from_call(err)       # rich error: google.rpc.Status with BadRequest
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert bad.field_violations[0].field == field


PROSE = ["The quick brown fox jumps over the lazy dog, and then it runs away into the forest.",
         "And God said, Let there be light: and there was light.",
         "The function returns a new list containing the items of the iterable in sorted order."]


def model_coded_blob(stub) -> bytes:
    """A blob whose payload the model coded (not a fallback): it carries an integrity check."""
    for text in PROSE:
        blob = compress(stub, text).blob
        if Codec.blob_mode(blob) == Mode.EXACT:
            return blob
    pytest.fail("the model coded none of the sample sentences")


def test_corrupt_payload_is_data_loss_or_invalid(stub):
    blob = bytearray(model_coded_blob(stub))
    blob[HEADER_BYTES + (len(blob) - HEADER_BYTES) // 2] ^= 0x5A
    err = status_of(stub.Decompress, codec_pb2.DecompressRequest(blob=bytes(blob)))
    assert err.code() in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.INVALID_ARGUMENT)
    assert "blob" in err.details()


def encode_batches(channel, text, pieces=3):
    """The stream header and frame batches of ``text`` sent in ``pieces`` flushed chunks."""
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    data, n = text.encode(), len(text.encode())
    cuts = [n * i // pieces for i in range(pieces + 1)]
    reqs = [codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig())]
    for i in range(pieces):
        reqs.append(codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(
            text_utf8=data[cuts[i]:cuts[i + 1]], flush=i < pieces - 1, end_message=i == pieces - 1)))
    out = list(stub.EncodeStream(iter(reqs)))
    return out[0].header, [r.frames for r in out[1:]]


def decode_stream(stub, model_id, batches):
    reqs = [codec_pb2.DecodeStreamRequest(config=codec_pb2.DecodeConfig(model_id=model_id))]
    reqs += [codec_pb2.DecodeStreamRequest(frames=b) for b in batches]
    return list(stub.DecodeStream(iter(reqs)))


def test_decode_stream_returns_the_encoded_text(stub, channel):
    text = "Thin clients let the server decode. " * 4
    header, batches = encode_batches(channel, text)
    assert len(batches) == 3
    out = decode_stream(stub, header.model_id, batches)
    assert "".join(r.text for r in out) == text
    assert [r.message_end for r in out] == [False, False, True]


def test_decode_stream_rejects_bad_batches(stub, channel, registry):
    _, batches = encode_batches(channel, " ".join(PROSE))
    mid = registry.default.model_id
    corrupt = bytes(b ^ 0xA5 for b in batches[1])
    # corrupt data fails its check (DATA_LOSS) or, where the damage breaks the format first, is
    # malformed (INVALID_ARGUMENT); a batch of nothing is truncated
    bad_data = {grpc.StatusCode.DATA_LOSS, grpc.StatusCode.INVALID_ARGUMENT}
    cases = [
        ([batches[0], batches[2], batches[1]], bad_data, "frame batch 1"),
        ([batches[0], corrupt, batches[2]], bad_data, "frame batch 1"),
        ([b""], {grpc.StatusCode.INVALID_ARGUMENT}, "frame batch 0 is truncated"),
        ([b"\xff" * 64], bad_data, "frame batch 0"),
    ]
    for sent, codes, text in cases:
        err = status_of(decode_stream, stub, mid, sent)
        assert err.code() in codes and text in err.details(), (text, err.code(), err.details())
    err = status_of(decode_stream, stub, "ab" * 32, batches)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    reqs = iter([codec_pb2.DecodeStreamRequest(frames=batches[0])])
    err = status_of(lambda: list(stub.DecodeStream(reqs)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "must carry config" in err.details()
    assert "".join(r.text for r in decode_stream(stub, mid, batches)) == " ".join(PROSE)   # still fine


def test_get_model_streams_the_bundle_that_hashes_to_its_id(stub, registry):
    out = list(stub.GetModel(codec_pb2.GetModelRequest()))
    manifest = out[0].manifest
    assert manifest.model_id == registry.default.model_id
    files: dict[str, bytearray] = {}
    for r in out[1:]:
        buf = files.setdefault(r.chunk.name, bytearray())
        assert r.chunk.offset_bytes == len(buf)
        buf += r.chunk.data
    for f in manifest.files:
        assert hashlib.sha256(files[f.name]).hexdigest() == f.sha256 and len(files[f.name]) == f.size_bytes
    assert {n: bytes(b) for n, b in files.items()} == registry.default.bundle_files()
    err = status_of(lambda: list(stub.GetModel(codec_pb2.GetModelRequest(model_id="cd" * 32))))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_list_models(stub, registry):
    models = stub.ListModels(codec_pb2.ListModelsRequest()).models
    semantic = registry.for_tier(Tier.SEMANTIC)      # the model that reads the retired tier
    assert registry.default.kind == "intlm" and semantic.kind == "float"
    assert [(m.model_id, m.is_default) for m in models] == [(registry.default.model_id, True),
                                                           (semantic.model_id, False)]
    for m, codec in zip(models, (registry.default, semantic)):
        assert m.size_bytes == sum(len(b) for b in codec.bundle_files().values())


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "rvqstream.v1.CodecService", "rvqstream.v1.ChannelService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    with pytest.raises(grpc.RpcError) as e:    # off unless asked for (--reflection)
        next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_when_asked_for(tmp_path, registry):
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", reflection=True), registry).start()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
                list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
        assert {"rvqstream.v1.CodecService", "rvqstream.v1.ChannelService", "grpc.health.v1.Health"} <= names
    finally:
        srv.close()
