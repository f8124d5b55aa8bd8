"""EncodeStream against a real server: chunked input decodes to the one-shot text, the latency
budget flushes a short frame, and every malformed stream gets the right status while the server
keeps serving the others."""

from __future__ import annotations

import itertools
import threading
import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvqstream._proto import codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.client import END_MESSAGE, FLUSH, Client, RvqstreamError

TEXT = ("Stream me gently: ünïcödé, emoji 🚀, CJK 漢字, tabs\tand newlines\n"
        "— all of it must come back byte for byte. ")


def decode(client: Client, batches) -> str:
    batches = list(batches)
    decoder = client.decoder(batches[0].model_id, batches[0].tier)
    return "".join(decoder.push(b.data).text for b in batches)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, registry):
    from conftest import ServerThread

    from rvqstream.server import ServerConfig

    srv = ServerThread(ServerConfig(data_dir=tmp_path_factory.mktemp("data")), registry).start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def shared_client(shared_server, tmp_path_factory):
    with Client(shared_server.target, cache_dir=tmp_path_factory.mktemp("cache")) as client:
        yield client


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(TEXT.encode())), max_size=12),
       flush_at=st.sets(st.integers(min_value=0, max_value=12), max_size=3))
def test_chunked_input_decodes_to_the_same_text_as_one_shot(shared_client, cuts, flush_at):
    data = TEXT.encode()
    bounds = sorted({0, len(data), *cuts})
    chunks = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        chunks.append(data[a:b])          # may split a multi-byte character
        if i in flush_at:
            chunks.append(FLUSH)
    chunked = list(shared_client.encode_stream(chunks))
    one_shot = list(shared_client.encode_stream([TEXT]))
    assert decode(shared_client, chunked) == decode(shared_client, one_shot) == TEXT
    assert all(b.wire_bytes == len(b.data) + 2 + 5 for b in chunked if len(b.data) < 128)


def test_messages_in_one_stream_decode_separately(shared_client):
    batches = list(shared_client.encode_stream(["first message.", END_MESSAGE, "second one"]))
    decoder = shared_client.decoder(batches[0].model_id)
    texts, current = [], ""
    for b in batches:
        d = decoder.push(b.data)
        current += d.text
        if d.message_end:
            texts.append(current)
            current = ""
    assert texts == ["first message.", "second one"]


def test_semantic_tier_stream_is_refused(shared_client, float_codec):
    """The semantic text tier is retired: an encode stream in it is INVALID_ARGUMENT, with any model."""
    for model_id in ("", float_codec.model_id):
        with pytest.raises(RvqstreamError) as err:
            list(shared_client.encode_stream(["a short message"], tier="semantic", model_id=model_id))
        assert err.value.code == "INVALID_ARGUMENT" and "retired" in err.value.message


def test_exact_tier_stream_with_stages_on_the_float_model(shared_client, float_codec):
    text = "Searchable layers travel in the float model's exact tier."
    batches = list(shared_client.encode_stream([text], stage_count=2, model_id=float_codec.model_id))
    assert batches[0].model_id == float_codec.model_id
    assert decode(shared_client, batches) == text


def test_nagle_first_text_of_an_idle_stream_goes_at_once_later_text_waits_for_company(shared_server):
    """Budget 1.5 s: the first word comes back long before it; words written right after it wait
    for the budget and then travel together in one batch."""
    more = threading.Event()
    stop = threading.Event()

    def requests():
        yield codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(max_delay_ms=1500))
        yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=b"first "))
        more.wait(30)
        for word in (b"second ", b"third ", b"fourth "):
            yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=word))
        stop.wait(30)

    with grpc.insecure_channel(shared_server.target) as ch:
        call = codec_pb2_grpc.CodecServiceStub(ch).EncodeStream(requests())
        next(call)
        t0 = time.monotonic()
        first = next(call).frames
        assert time.monotonic() - t0 < 1.0
        t1 = time.monotonic()
        more.set()
        second = next(call).frames
        waited = time.monotonic() - t1
        assert 1.0 < waited < 3.0, waited
        stop.set()
        call.cancel()
    from rvqstream.models import Codec

    dec = Codec.load().decoder()
    assert dec.push(first).text + dec.push(second).text == "first second third fourth "


def test_latency_budget_flushes_a_short_frame_while_the_stream_stays_open(shared_server):
    """With no flush, no message end and no more text, the budget alone emits the frame."""
    no_more_text = threading.Event()

    def requests():
        yield codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(max_delay_ms=50))
        yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=b"hello budget"))
        no_more_text.wait(30)

    with grpc.insecure_channel(shared_server.target) as ch:
        call = codec_pb2_grpc.CodecServiceStub(ch).EncodeStream(requests())
        header = next(call).header
        assert header.max_delay_ms == 50
        batch = next(call).frames
        no_more_text.set()
        call.cancel()
    from rvqstream.models import Codec

    decoded = Codec.load().decoder().push(batch)
    assert decoded.text == "hello budget" and not decoded.message_end


# -- bad input ------------------------------------------------------------------------------


def encode_raw(target, requests, timeout=30):
    with grpc.insecure_channel(target) as ch:
        return list(codec_pb2_grpc.CodecServiceStub(ch).EncodeStream(iter(requests), timeout=timeout))


def config(**kw):
    return codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(**kw))


def chunk(data=b"", **kw):
    return codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=data, **kw))


BAD_STREAMS = [
    ("payload before config", [chunk(b"hi")], grpc.StatusCode.FAILED_PRECONDITION, "must carry config"),
    ("config twice", [config(), config()], grpc.StatusCode.FAILED_PRECONDITION, "only once"),
    ("invalid UTF-8", [config(), chunk(b"ok \xff\xfe")], grpc.StatusCode.INVALID_ARGUMENT,
     "stream byte 3"),
    ("ends inside a character", [config(), chunk("é".encode()[:1])], grpc.StatusCode.INVALID_ARGUMENT,
     "ends inside a UTF-8 character"),
    ("oversize chunk", [config(), chunk(b"x" * (70 << 10))], grpc.StatusCode.INVALID_ARGUMENT,
     "at most"),
    ("unknown model", [config(model_id="00" * 32)], grpc.StatusCode.NOT_FOUND, "unknown model id"),
    ("too many stages", [config(stage_count=99)], grpc.StatusCode.INVALID_ARGUMENT, "stage_count"),
    ("unknown tier", [config(tier=7)], grpc.StatusCode.INVALID_ARGUMENT, "unknown tier"),
    ("budget too long", [config(max_delay_ms=10**6)], grpc.StatusCode.INVALID_ARGUMENT, "max_delay_ms"),
    ("empty request", [config(), codec_pb2.EncodeStreamRequest()], grpc.StatusCode.INVALID_ARGUMENT,
     "neither config nor chunk"),
]


def test_bad_streams_get_clear_statuses_and_other_streams_go_on(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        gate = threading.Event()

        def slow_chunks():
            yield "a stream that outlives "
            gate.wait(30)
            yield "every bad one."

        good = client.encode_stream(slow_chunks())
        first = next(good)                      # the good stream is open and has its header
        for name, requests, code, text in BAD_STREAMS:
            with pytest.raises(grpc.RpcError) as err:
                encode_raw(server.target, requests)
            assert err.value.code() == code, name
            assert text in err.value.details(), (name, err.value.details())
        gate.set()
        batches = [first, *good]
        assert decode(client, batches) == "a stream that outlives every bad one."


def test_sdk_raises_one_exception_type(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client, pytest.raises(RvqstreamError) as err:
        list(client.encode_stream(["x"], model_id="ff" * 32))
    assert err.value.code == "NOT_FOUND", err.value.message
