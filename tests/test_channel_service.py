"""Channels against a real server and SQLite log: publish with durable acks, many subscribers
(replay then live), resume from an offset, dedup, fallback fetch, and every bad input."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from rvqstream._proto import channel_pb2, channel_pb2_grpc
from rvqstream.client import AsyncClient, Client, RvqstreamError

pytestmark = pytest.mark.channel_suite   # on SQLite and on JetStream (conftest.py)

MESSAGES = [f"message {i}: {'ünïcode ' if i % 3 else ''}text that travels compressed" for i in range(30)]


@pytest.fixture
def stub(channel):
    return channel_pb2_grpc.ChannelServiceStub(channel)


def status_of(fn):
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def publish_raw(stub, requests):
    return list(stub.Publish(iter(requests)))


def cfg(channel="c", **kw):
    return channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel=channel, **kw))


def msg(data: bytes, seq=0):
    return channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=data, sequence=seq))


async def test_many_subscribers_get_every_message_in_order(server, cache_dir):
    async with AsyncClient(server.target, cache_dir=cache_dir) as client:
        await client.publish("news/world", MESSAGES[:10])            # replayed to everyone

        async def collect(from_offset: int):
            out = []
            async for m in client.subscribe("news/world", from_offset):
                out.append(m)
                if m.offset == len(MESSAGES) - 1:
                    return out

        subscribers = [asyncio.create_task(collect(k)) for k in (0, 0, 3, 7, 10)]
        await asyncio.sleep(0.2)
        offsets = await client.publish("news/world", MESSAGES[10:])  # live tail
        assert offsets == list(range(10, 30))
        results = await asyncio.wait_for(asyncio.gather(*subscribers), 60)
    for start, got in zip((0, 0, 3, 7, 10), results):
        assert [m.offset for m in got] == list(range(start, 30))
        assert [m.text for m in got] == MESSAGES[start:]
        assert not any(m.fallback for m in got)


def test_disconnect_and_resume_from_last_offset(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        assert client.publish("sync", MESSAGES) == list(range(30))
        seen = []
        for m in client.subscribe("sync"):
            seen.append(m)
            if len(seen) == 12:
                break                                    # the device goes offline
        for m in client.subscribe("sync", seen[-1].offset + 1):
            seen.append(m)
            if m.offset == 29:
                break
    assert [m.offset for m in seen] == list(range(30)) and [m.text for m in seen] == MESSAGES


def test_subscriber_rides_out_a_server_restart(server, server_config, registry, cache_dir):
    from conftest import ServerThread

    with Client(server.target, cache_dir=cache_dir, reconnect_timeout_s=60) as client:
        client.publish("restart", MESSAGES[:5])
        stream = client.subscribe("restart")
        got = [next(stream) for _ in range(5)]
        port = server.port
        server.stop()                                    # the subscriber's stream breaks
        again = ServerThread(server_config, registry, address=f"127.0.0.1:{port}").start()
        try:
            client.publish("restart", MESSAGES[5:10])
            got += [next(stream) for _ in range(5)]
            stream.close()
        finally:
            again.close()
    assert [m.offset for m in got] == list(range(10)) and [m.text for m in got] == MESSAGES[:10]


def test_acks_carry_offsets_and_duplicates_are_not_stored(stub):
    first = publish_raw(stub, [cfg(producer_id="p1"), msg(b"a", 0), msg(b"b", 1)])
    again = publish_raw(stub, [cfg(producer_id="p1"), msg(b"b", 1), msg(b"c", 2)])
    assert [(a.offset, a.sequence, a.duplicate) for a in first] == [(0, 0, False), (1, 1, False)]
    assert [(a.offset, a.sequence, a.duplicate) for a in again] == [(1, 1, True), (2, 2, False)]
    assert all(a.stored_bytes > 0 for a in first)
    sub = stub.Subscribe(channel_pb2.SubscribeRequest(channel="c"))
    got = [next(sub).message for _ in range(3)]
    sub.cancel()
    assert [m.offset for m in got] == [0, 1, 2]
    assert got[0].model_id and got[1].model_id == "" and got[2].model_id == ""   # sent once


def test_fetch_returns_the_message_in_fallback_form(server, cache_dir, registry):
    with Client(server.target, cache_dir=cache_dir) as client:
        client.publish("fetch", MESSAGES[:3])
        m = client.fetch("fetch", 2)
    assert (m.offset, m.text, m.fallback) == (2, MESSAGES[2], True)
    assert registry.default.decompress(registry.default.fallback(MESSAGES[2])) == MESSAGES[2]


def test_bad_channel_requests_get_clear_statuses(stub, server_config):
    publish_raw(stub, [cfg("known"), msg(b"one"), msg(b"two", 1)])
    too_big = b"x" * (server_config.max_message_bytes + 1)
    cases = [
        (lambda: publish_raw(stub, [msg(b"early")]), grpc.StatusCode.FAILED_PRECONDITION, "must carry config"),
        (lambda: publish_raw(stub, [cfg("known"), cfg("known")]), grpc.StatusCode.FAILED_PRECONDITION,
         "only once"),
        (lambda: publish_raw(stub, [cfg("bad name!")]), grpc.StatusCode.INVALID_ARGUMENT, "channel name"),
        (lambda: publish_raw(stub, [cfg("known", tier=9)]), grpc.StatusCode.INVALID_ARGUMENT, "unknown tier"),
        (lambda: publish_raw(stub, [cfg("known"), msg(b"\xff")]), grpc.StatusCode.INVALID_ARGUMENT,
         "not valid UTF-8"),
        (lambda: publish_raw(stub, [cfg("known"), msg(too_big)]), grpc.StatusCode.INVALID_ARGUMENT, "at most"),
        (lambda: next(stub.Subscribe(channel_pb2.SubscribeRequest(channel="nowhere"))),
         grpc.StatusCode.NOT_FOUND, "does not exist"),
        (lambda: next(stub.Subscribe(channel_pb2.SubscribeRequest(channel="known", from_offset=3))),
         grpc.StatusCode.OUT_OF_RANGE, "past the end"),
        (lambda: next(stub.Subscribe(channel_pb2.SubscribeRequest(channel="")))
         , grpc.StatusCode.INVALID_ARGUMENT, "channel name"),
        (lambda: stub.FetchMessage(channel_pb2.FetchMessageRequest(channel="known", offset=2)),
         grpc.StatusCode.OUT_OF_RANGE, "offsets 0..1"),
        (lambda: stub.FetchMessage(channel_pb2.FetchMessageRequest(channel="nowhere", offset=0)),
         grpc.StatusCode.NOT_FOUND, "does not exist"),
    ]
    for fn, code, text in cases:
        err = status_of(fn)
        assert err.code() == code and text in err.details(), (text, err.code(), err.details())
    # the good messages before a bad one were acknowledged and stored; nothing else was
    acks = []
    with pytest.raises(grpc.RpcError):
        for ack in stub.Publish(iter([cfg("known"), msg(b"three"), msg(b"\xc3")])):
            acks.append(ack.offset)
    assert acks == [2]
    sub = stub.Subscribe(channel_pb2.SubscribeRequest(channel="known", from_offset=0))
    assert [next(sub).message.offset for _ in range(3)] == [0, 1, 2]
    sub.cancel()
    # the channel still serves after every bad request
    assert stub.FetchMessage(channel_pb2.FetchMessageRequest(channel="known", offset=2)).offset == 2


def test_sdk_errors_for_channels(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        with pytest.raises(RvqstreamError) as err:
            next(client.subscribe("missing"))
        assert err.value.code == "NOT_FOUND"
        with pytest.raises(RvqstreamError) as err:
            client.publish("bad name", ["x"])
        assert err.value.code == "INVALID_ARGUMENT"
        client.publish("ok", ["x"])
        with pytest.raises(RvqstreamError) as err:
            client.fetch("ok", 5)
        assert err.value.code == "OUT_OF_RANGE"


def test_deadlines_and_cancellation_are_honoured(stub):
    publish_raw(stub, [cfg("tail"), msg(b"only")])
    sub = stub.Subscribe(channel_pb2.SubscribeRequest(channel="tail"), timeout=0.5)
    assert next(sub).message.offset == 0
    with pytest.raises(grpc.RpcError) as err:
        next(sub)                                        # waits live until the deadline
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    live = stub.Subscribe(channel_pb2.SubscribeRequest(channel="tail", from_offset=1))
    live.cancel()
    assert publish_raw(stub, [cfg("tail"), msg(b"after")])[0].offset == 1   # the server goes on
