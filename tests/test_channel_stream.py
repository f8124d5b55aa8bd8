"""Streamed messages in channels, against a real server and SQLite log: any chunking decodes to the
written text, subscribers see text before the message ends, fan-out, a follower cut off
mid-message resumes without repeating or missing text, a producer whose server is SIGKILLed
continues its message, an abandoned message ends aborted, and bad input gets clear statuses
while the server keeps serving."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import grpc
import pytest
from conftest import Proxy, ServerProcess, ServerThread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvqstream._proto import channel_pb2, channel_pb2_grpc, frame_pb2
from rvqstream.client import AsyncClient, Client, Delta, RvqstreamError

pytestmark = pytest.mark.channel_suite   # on SQLite and on JetStream (conftest.py)

ANSWER = ("Streaming answers reach every edge device as compact frames: each word is coded once, "
          "fanned out to all followers and decoded locally, ünïcödé 🎉 and 日本語 included.\n") * 2


@pytest.fixture(scope="module")
def shared(tmp_path_factory, registry, channel_log):
    srv = ServerThread(channel_log.config(tmp_path_factory.mktemp("data"), stream_timeout_s=1.0), registry).start()
    with Client(srv.target, cache_dir=tmp_path_factory.mktemp("cache")) as client:
        yield srv, client
    srv.close()


def collect(client: Client, channel: str, offset: int, from_offset: int = 0) -> list[Delta]:
    """Deltas of ``channel`` until message ``offset`` is done."""
    out = []
    for d in client.follow(channel, from_offset):
        out.append(d)
        if d.offset == offset and d.done:
            return out
    return out


def wait_for_offset(writer, timeout: float = 30) -> int:
    """The open message's offset, once its first text is durable."""
    deadline = time.monotonic() + timeout
    while writer.offset is None:
        assert time.monotonic() < deadline, "the stream's first text never became durable"
        time.sleep(0.01)
    return writer.offset


def text_of(deltas: list[Delta], offset: int) -> str:
    return "".join(d.text for d in deltas if d.offset == offset)


_channels = iter(range(10**6))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=10),
       flushes=st.sets(st.integers(min_value=0, max_value=10), max_size=3))
def test_any_chunking_of_a_streamed_message_decodes_to_the_written_text(shared, cuts, flushes):
    _, client = shared
    channel = f"chunked-{next(_channels)}"
    bounds = sorted({0, len(ANSWER), *cuts})
    with client.open_stream(channel, max_delay_ms=20) as w:
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            w.write(ANSWER[a:b])
            if i in flushes:
                w.flush()
        offset = w.end_message()
    assert offset == 0
    (msg,) = [m for _, m in zip(range(1), client.subscribe(channel))]
    assert msg.text == ANSWER and not msg.aborted and not msg.fallback
    assert text_of(collect(client, channel, 0), 0) == ANSWER


def test_streamed_and_published_messages_share_one_log(shared):
    _, client = shared
    assert client.publish("mixed", ["published first"]) == [0]
    with client.open_stream("mixed") as w:
        w.write("streamed second")
        assert w.end_message() == 1
        w.write("")
        assert w.end_message() == 2                  # an empty message is a message too
    assert client.publish("mixed", ["published fourth"]) == [3]
    got = [m for _, m in zip(range(4), client.subscribe("mixed"))]
    assert [(m.offset, m.text) for m in got] == [(0, "published first"), (1, "streamed second"), (2, ""),
                                                 (3, "published fourth")]
    assert client.fetch("mixed", 1).text == "streamed second"


def test_subscribers_see_the_first_words_before_the_message_ends_and_fan_out(shared):
    _, client = shared
    followers = 6
    seen = [threading.Event() for _ in range(followers)]
    results: list[list[tuple[float, Delta]]] = [[] for _ in range(followers)]

    def follow(k: int) -> None:
        with Client(client._aio.target, cache_dir=client.cache_dir) as c:
            for d in c.follow("live", 0):
                results[k].append((time.monotonic(), d))
                if d.text:
                    seen[k].set()
                if d.done:
                    return

    with client.open_stream("live", max_delay_ms=100) as w:
        w.write("warm ")
        wait_for_offset(w)                       # the first text is durable: the channel exists
        threads = [threading.Thread(target=follow, args=(k,)) for k in range(followers)]
        for t in threads:
            t.start()
        for k in range(followers):     # every follower has the message's first text, live
            assert seen[k].wait(60), f"follower {k} saw no text while the message was open"
        words = ANSWER.split(" ")
        for word in words[:10]:
            w.write(word + " ")
            time.sleep(0.03)
        ended_at = time.monotonic()
        for word in words[10:]:
            w.write(word + " ")
        w.write("end")
        w.end_message()
    for t in threads:
        t.join(60)
    expected = "warm " + " ".join(words) + " end"
    for got in results:
        assert "".join(d.text for _, d in got) == expected
        assert got[-1][1].done and not got[-1][1].aborted
        assert len([d for at, d in got if at < ended_at and d.text]) >= 2   # more text arrived live


def test_a_follower_cut_off_mid_message_resumes_without_repeating_or_missing_text(shared):
    srv, client = shared
    proxy = Proxy(srv.target)
    deltas: list[Delta] = []
    first = threading.Event()

    def follow() -> None:
        with Client(proxy.target, cache_dir=client.cache_dir, reconnect_timeout_s=30) as c:
            for d in c.follow("cut", 0):
                deltas.append(d)
                first.set()
                if d.done:
                    return

    try:
        with client.open_stream("cut", max_delay_ms=30) as w:
            w.write("opening words ")
            wait_for_offset(w)
            t = threading.Thread(target=follow)
            t.start()
            assert first.wait(30)
            words = ANSWER.split(" ")
            for i, word in enumerate(words):
                w.write(word + " ")
                time.sleep(0.01)
                if i in (5, 15):
                    proxy.drop()             # the link fails inside the message
            w.end_message()
        t.join(60)
    finally:
        proxy.close()
    assert proxy.drops >= 2
    assert "".join(d.text for d in deltas) == "opening words " + " ".join(words) + " "
    assert deltas[-1].done and sum(d.done for d in deltas) == 1


def test_an_abandoned_message_ends_aborted_with_its_durable_text(shared):
    srv, client = shared
    with Client(srv.target, cache_dir=client.cache_dir) as producer:
        w = producer.open_stream("abandoned", max_delay_ms=20)
        w.write("the producer wrote this ")
        wait_for_offset(w)
    # the producer's process is gone (its client closed without ending the message)
    deltas = collect(client, "abandoned", 0)
    assert text_of(deltas, 0) == "the producer wrote this "
    assert deltas[-1].done and deltas[-1].aborted
    (msg,) = [m for _, m in zip(range(1), client.subscribe("abandoned"))]
    assert msg.aborted and msg.text == "the producer wrote this "


def test_a_producer_continues_its_message_after_a_server_sigkill(tmp_path, channel_log):
    server = ServerProcess(tmp_path / "data", args=("--stream-timeout-s", "60", *channel_log.args()))
    server.start()
    words = ANSWER.split(" ")
    deltas: list[Delta] = []
    try:
        def follow() -> None:
            with Client(server.target, cache_dir=tmp_path / "f-cache", reconnect_timeout_s=120) as c:
                for d in c.follow("crash", 0):
                    deltas.append(d)
                    if d.done:
                        return

        with Client(server.target, cache_dir=tmp_path / "p-cache", reconnect_timeout_s=120) as producer:
            with producer.open_stream("crash", max_delay_ms=30) as w:
                w.write("before the crash ")
                wait_for_offset(w)
                t = threading.Thread(target=follow)
                t.start()
                for i, word in enumerate(words):
                    w.write(word + " ")
                    time.sleep(0.01)
                    if i == len(words) // 2:
                        server.kill()            # mid-message: some text durable, some not
                        server.start()
                offset = w.end_message()
            t.join(120)
    finally:
        server.close()
    assert offset == 0
    assert "".join(d.text for d in deltas) == "before the crash " + " ".join(words) + " "
    assert deltas[-1].done and not deltas[-1].aborted


# -- bad input ------------------------------------------------------------------------------


def stream_raw(target: str, requests, timeout: float = 30):
    with grpc.insecure_channel(target) as ch:
        return list(channel_pb2_grpc.ChannelServiceStub(ch).PublishStream(iter(requests), timeout=timeout))


def config(channel="bad", producer_id="p1", **kw):
    return channel_pb2.PublishStreamRequest(config=channel_pb2.PublishStreamConfig(
        channel=channel, producer_id=producer_id, **kw))


def chunk(data=b"", **kw):
    return channel_pb2.PublishStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=data, **kw))


BAD_STREAMS = [
    ("chunk before config", [chunk(b"hi")], grpc.StatusCode.FAILED_PRECONDITION, "must carry config"),
    ("config twice", [config(), config()], grpc.StatusCode.FAILED_PRECONDITION, "only once"),
    ("bad channel", [config(channel="-nope")], grpc.StatusCode.INVALID_ARGUMENT, "channel name"),
    ("bad producer", [config(producer_id="a b")], grpc.StatusCode.INVALID_ARGUMENT, "producer_id"),
    ("no producer", [config(producer_id="")], grpc.StatusCode.INVALID_ARGUMENT, "producer_id"),
    ("UTF-8 broken across chunks", [config(), chunk("é".encode()[:1]), chunk(b"x")],
     grpc.StatusCode.INVALID_ARGUMENT, "not valid UTF-8"),
    ("ends inside a character", [config(), chunk("é".encode()[:1], end_message=True)],
     grpc.StatusCode.INVALID_ARGUMENT, "ends inside a UTF-8 character"),
    ("oversize chunk", [config(), chunk(b"x" * (70 << 10))], grpc.StatusCode.INVALID_ARGUMENT, "at most"),
    ("unknown tier", [config(tier=9)], grpc.StatusCode.INVALID_ARGUMENT, "unknown tier"),
    ("budget too long", [config(max_delay_ms=10**6)], grpc.StatusCode.INVALID_ARGUMENT, "max_delay_ms"),
    ("sequence too large", [config(sequence=1 << 63)], grpc.StatusCode.OUT_OF_RANGE, "sequence"),
    ("message too long", [config(), chunk(b"x" * (40 << 10)), chunk(b"y" * (40 << 10))],
     grpc.StatusCode.RESOURCE_EXHAUSTED, "holds at most"),
]


def test_bad_streams_get_clear_statuses_and_an_open_stream_goes_on(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        with client.open_stream("good") as w:
            w.write("a message that outlives ")
            for name, requests, code, text in BAD_STREAMS:
                with pytest.raises(grpc.RpcError) as err:
                    stream_raw(server.target, requests)
                assert err.value.code() == code, name
                assert text in err.value.details(), (name, err.value.details())
            w.write("every bad stream.")
            assert w.end_message() == 0
        with pytest.raises(RvqstreamError) as err:
            w.write("after close")
        assert err.value.code == "FAILED_PRECONDITION"
        with pytest.raises(RvqstreamError) as err:
            client.open_stream("-bad name")
        assert err.value.code == "INVALID_ARGUMENT"
        assert next(client.subscribe("good")).text == "a message that outlives every bad stream."
        # the valid part of a stream that then fails is durable; the failure names the byte
        with pytest.raises(grpc.RpcError) as err:
            stream_raw(server.target, [config(channel="half"), chunk(b"kept ", flush=True),
                                       chunk(b"\xff")])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "stream byte 5" in err.value.details()


def test_resuming_with_other_settings_and_bad_subscriptions_are_refused(server):
    with grpc.insecure_channel(server.target) as ch:
        stub = channel_pb2_grpc.ChannelServiceStub(ch)
        out = list(stub.PublishStream(iter([config(channel="s", producer_id="px"),
                                            chunk(b"semantic? no: exact", flush=True)])))
        assert out[0].header.stream.tier == frame_pb2.TIER_EXACT and out[1].ack.durable_bytes == 19
        with pytest.raises(grpc.RpcError) as err:
            list(stub.PublishStream(iter([config(channel="s", producer_id="px", tier=frame_pb2.TIER_SEMANTIC)])))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "retired" in err.value.details()
        resumed = list(stub.PublishStream(iter([config(channel="s", producer_id="px"),
                                                chunk(b" and more", end_message=True)])))
        assert resumed[0].header.resume.durable_bytes == 19
        assert resumed[-1].ack.state == channel_pb2.MESSAGE_STATE_COMPLETE
        assert resumed[-1].ack.durable_bytes == 28
        for request, code in [
            (channel_pb2.SubscribeRequest(channel="nope"), grpc.StatusCode.NOT_FOUND),
            (channel_pb2.SubscribeRequest(channel="s", from_offset=5), grpc.StatusCode.OUT_OF_RANGE),
            (channel_pb2.SubscribeRequest(channel="s", from_offset=1, from_part=2), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                next(stub.Subscribe(request))
            assert err.value.code() == code


async def test_async_client_streams_and_follows(server, cache_dir):
    async with AsyncClient(server.target, cache_dir=cache_dir) as client:
        async with client.open_stream("aio", max_delay_ms=20) as w:
            await w.write("async ")
            await w.write("stream")
            assert await w.end_message() == 0

        async def first_message():
            out = []
            async for d in client.follow("aio"):
                out.append(d)
                if d.done:
                    return out

        deltas = await asyncio.wait_for(first_message(), 30)
        assert "".join(d.text for d in deltas) == "async stream"


def test_live_batches_travel_as_bare_frames_responses(server, cache_dir):
    """On the wire a live streamed message after an ended one costs its batches' own responses
    only: no announcement, offset_delta 0, 2 bytes of protobuf around each batch. (A message
    already closed when the server reads it is announced.)"""
    with Client(server.target, cache_dir=cache_dir) as client:
        client.publish("wire", ["opening"])
        with grpc.insecure_channel(server.target) as ch:
            call = channel_pb2_grpc.ChannelServiceStub(ch).Subscribe(channel_pb2.SubscribeRequest(channel="wire"))
            responses = [next(call)]
            with client.open_stream("wire", max_delay_ms=20) as w:
                for text in ("first streamed message", "second one"):
                    first, rest = text.split(" ", 1)
                    w.write(first)
                    time.sleep(0.3)                  # the subscriber reads the message while it streams
                    w.write(" " + rest)
                    w.end_message()
            codec = client.model()
            decoder, texts, current = codec.decoder(), [], ""
            while len(texts) < 2:
                resp = next(call)
                responses.append(resp)
                d = decoder.push(resp.frames)
                current += d.text
                if d.message_end:
                    texts.append(current)
                    current = ""
            call.cancel()
    assert responses[0].message.offset == 0 and responses[0].message.blob
    assert texts == ["first streamed message", "second one"]
    for resp in responses[1:]:
        assert not resp.HasField("message") and resp.offset_delta == 0
        assert resp.ByteSize() == len(resp.frames) + 2


async def test_only_the_last_writer_of_a_message_leaving_starts_its_abort_timer(tmp_path):
    from rvqstream.server.logstore import MessageState, Part, StreamKey
    from rvqstream.server.publish_stream import OpenStreams
    from rvqstream.server.sqlite_store import SQLiteLogStore

    store = SQLiteLogStore(tmp_path / "log.sqlite3")
    try:
        await store.append_part("c", StreamKey("p", 0, "ab" * 32, 1), Part(0, b"x", 1, 1, False))
        streams = OpenStreams(store, timeout_s=0.2)
        old, new = object(), object()
        streams.claim("c", 0, old)
        streams.claim("c", 0, new)            # the producer came back on another connection
        streams.release("c", 0, old)          # ... and then its old call ended
        await asyncio.sleep(0.4)
        assert (await store.read("c", 0, 1, 1 << 20))[0].state == MessageState.STREAMING
        streams.release("c", 0, new)          # now the producer is gone
        await asyncio.sleep(0.4)
        assert (await store.read("c", 0, 1, 1 << 20))[0].state == MessageState.ABORTED
        await streams.close()
    finally:
        await store.close()


def test_closing_a_writer_ends_its_message_once_its_text_is_durable(shared):
    _, client = shared
    w = client.open_stream("closing", max_delay_ms=20)
    w.write("acknowledged before the close")
    wait_for_offset(w)                     # every byte durable: the writer holds none of it
    done = threading.Event()
    threading.Thread(target=lambda: (w.close(), done.set()), daemon=True).start()
    assert done.wait(30), "close() did not return"
    (msg,) = [m for _, m in zip(range(1), client.subscribe("closing"))]
    assert msg.text == "acknowledged before the close" and not msg.aborted


def test_interleaved_messages_survive_a_flaky_follower_link(shared):
    """Two producers stream into one channel at once; a follower whose link drops again and again
    resumes inside open messages and past finished ones, and ends with every text exactly once."""
    srv, client = shared
    proxy = Proxy(srv.target)
    texts = {name: [f"{name}{k}: " + " ".join(ANSWER.split(" ")[k:k + 12]) for k in range(3)] for name in "ab"}
    got: dict[int, str] = {}
    done: set[int] = set()

    def produce(name: str, offsets: list) -> None:
        with Client(srv.target, cache_dir=client.cache_dir) as c, \
                c.open_stream("inter", max_delay_ms=30) as w:
            for text in texts[name]:
                for word in text.split(" "):
                    w.write(word + " ")
                    time.sleep(0.01)
                offsets.append(w.end_message())

    def follow() -> None:
        with Client(proxy.target, cache_dir=client.cache_dir, reconnect_timeout_s=30) as c:
            for d in c.follow("inter", 0):
                got[d.offset] = got.get(d.offset, "") + d.text
                if d.done:
                    assert d.offset not in done, f"message {d.offset} ended twice"
                    done.add(d.offset)
                if len(done) == 7:
                    return

    try:
        client.publish("inter", ["opening"])
        offsets: dict[str, list] = {"a": [], "b": []}
        follower = threading.Thread(target=follow)
        follower.start()
        producers = [threading.Thread(target=produce, args=(n, offsets[n])) for n in "ab"]
        for t in producers:
            t.start()
        while any(t.is_alive() for t in producers):
            time.sleep(0.15)
            proxy.drop()
        follower.join(60)
    finally:
        proxy.close()
    assert proxy.drops >= 3 and not follower.is_alive()
    for name in "ab":
        assert [got[o] for o in offsets[name]] == [t + " " for t in texts[name]]
