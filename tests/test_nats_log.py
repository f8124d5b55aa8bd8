"""The JetStream channel log shared by replicas (a real single-node nats-server): writes through any
replica get dense offsets, a streamed message goes on through another replica, a new replica
rebuilds the same log, a message another replica writes is never idle here, and a log whose NATS
is down answers UNAVAILABLE and recovers. (The channel suite runs on it too: conftest.py.)"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from conftest import ChannelLog, ServerThread, fresh_prefix
from nats_servers import NatsServer

from rvqstream._proto import log_pb2
from rvqstream.client import Client, RvqstreamError
from rvqstream.server.logstore import (
    LogUnavailable,
    MessageState,
    Part,
    PartConflict,
    Record,
    Retention,
    StreamKey,
)
from rvqstream.server.nats_log import NatsLogStore

MODEL = "cd" * 32
KEY = StreamKey("producer", 3, MODEL, 1)


@pytest.fixture
def replicas(tmp_path, nats_server):
    """Opens replicas of one log (one prefix): ``await replicas()`` -> a started store."""
    prefix, opened = fresh_prefix(), []

    async def open_replica() -> NatsLogStore:
        store = NatsLogStore([nats_server.url], tmp_path / f"view{len(opened)}", prefix)
        await store.start()
        opened.append(store)
        return store

    yield open_replica


async def _close(*stores: NatsLogStore) -> None:
    for s in stores:
        await s.close()


async def test_appends_through_two_replicas_get_dense_offsets(replicas):
    a, b = await replicas(), await replicas()
    try:
        writes = [s.append("news", [Record(f"{name}{i}".encode(), MODEL)])
                  for i in range(30) for name, s in (("a", a), ("b", b))]
        acks = await asyncio.gather(*writes)
        assert sorted(ack[0].offset for ack in acks) == list(range(60))
        for s in (a, b):
            await s.wait("news", 59)
            entries = await s.read("news", 0, 100, 1 << 20)
            assert [e.offset for e in entries] == list(range(60))
        assert [e.blob for e in await a.read("news", 0, 100, 1 << 20)] == \
            [e.blob for e in await b.read("news", 0, 100, 1 << 20)]
        dup = await b.append("news", [Record(b"x", MODEL, "p", 1)])
        again = await a.append("news", [Record(b"x", MODEL, "p", 1), Record(b"y", MODEL, "p", 2)])
        assert [(x.offset, x.duplicate) for x in dup + again] == [(60, False), (60, True), (61, False)]
    finally:
        await _close(a, b)


async def test_a_streamed_message_goes_on_through_another_replica(replicas):
    a, b = await replicas(), await replicas()
    try:
        await a.append("live", [Record(b"whole", MODEL)])
        first = await a.append_part("live", KEY, Part(0, b"p0", 2, 11, False))
        info = await b.find_stream("live", KEY.producer_id, KEY.sequence)   # the producer moved to b
        assert (info.offset, info.parts, info.crc, info.state) == (first.offset, 1, 11, MessageState.STREAMING)
        done = await b.append_part("live", KEY, Part(1, b"p1", 2, 12, True))
        assert (done.offset, done.parts, done.state) == (1, 2, MessageState.COMPLETE)
        with pytest.raises(PartConflict):                  # a's old writer comes back late
            await a.append_part("live", KEY, Part(1, b"late", 4, 13, False))
        await a.wait("live", 1)
        assert await a.read_parts("live", 1, 0, 1 << 20) == ([b"p0", b"p1"], MessageState.COMPLETE)
        assert await a.abort("live", 1) is False
    finally:
        await _close(a, b)


async def test_a_new_replica_rebuilds_the_same_log(replicas):
    a = await replicas()
    try:
        await a.append("kb", [Record(bytes([i]), MODEL, "p", i) for i in range(5)])
        await a.append_part("kb", KEY, Part(0, b"open", 4, 1, False))
        await a.append_part("other/ns", KEY, Part(0, b"x", 1, 1, True))
        c = await replicas()
        try:
            assert await c.end_offset("kb") == 6 and await c.end_offset("other/ns") == 1
            assert [e.blob for e in await c.read("kb", 0, 10, 1 << 20)][:5] == [bytes([i]) for i in range(5)]
            assert sorted(await c.open_streams()) == [("kb", 5)]
            assert (await c.append("kb", [Record(b"next", MODEL)]))[0].offset == 6
            assert (await c.append("kb", [Record(b"again", MODEL, "p", 4)]))[0].duplicate
        finally:
            await c.close()
    finally:
        await a.close()


async def test_a_message_written_through_another_replica_is_not_idle_here(replicas):
    a, b = await replicas(), await replicas()
    try:
        info = await a.append_part("t", KEY, Part(0, b"p", 1, 1, False))
        await b.wait("t", info.offset)
        assert b.idle_s("t", info.offset) < 5
        await asyncio.sleep(0.3)
        before = b.idle_s("t", info.offset)
        await a.touch("t", info.offset)
        await asyncio.sleep(0.1)              # the touch reaches b's fold
        assert b.idle_s("t", info.offset) < before
        assert await b.abort("t", info.offset) is True
        assert b.idle_s("t", info.offset) == float("inf")          # closed: nothing keeps it open
    finally:
        await _close(a, b)


def test_two_server_replicas_serve_one_channel(tmp_path, registry, nats_server):
    log, prefix = ChannelLog("nats", nats_server.url), fresh_prefix()
    a = ServerThread(log.config(tmp_path / "a", prefix), registry).start()
    b = ServerThread(log.config(tmp_path / "b", prefix), registry).start()
    try:
        with Client(a.target, cache_dir=tmp_path / "cache") as ca, \
                Client([a.target, b.target], cache_dir=tmp_path / "cache") as both:
            follower = both.follow("chat", 0)
            assert ca.publish("chat", ["hello from a", "second"]) == [0, 1]
            with ca.open_stream("chat", max_delay_ms=20) as w:
                w.write("streamed through a")
            assert both.publish("chat", ["through either"]) == [3]
            texts: dict[int, str] = {}
            for d in follower:
                texts[d.offset] = texts.get(d.offset, "") + d.text
                if len([o for o in texts if o <= 3]) == 4 and d.offset == 3 and d.done:
                    break
            assert texts == {0: "hello from a", 1: "second", 2: "streamed through a", 3: "through either"}
            assert both.search("chat", "hello from a", k=1)[0].offset == 0
    finally:
        a.close()
        b.close()


def test_a_lost_nats_is_unavailable_and_the_log_recovers(tmp_path, registry):
    nats = NatsServer(tmp_path / "nats").start()
    srv = ServerThread(ChannelLog("nats", nats.url).config(tmp_path / "data"), registry).start()
    try:
        with Client(srv.target, cache_dir=tmp_path / "cache", reconnect_timeout_s=1) as client:
            assert client.publish("c", ["before"]) == [0]
            nats.kill()
            with pytest.raises(RvqstreamError) as err:
                client.publish("c", ["while NATS is down"])
            assert err.value.code == "UNAVAILABLE"
            nats.start()
        with Client(srv.target, cache_dir=tmp_path / "cache", reconnect_timeout_s=60) as client:
            offsets = client.publish("c", ["after"])
            got = [m.text for m in itertools.islice(client.subscribe("c"), offsets[0] + 1)]
            assert got[0] == "before" and got[-1] == "after" and offsets[0] in (1, 2)
    finally:
        srv.close()
        nats.stop()


async def test_the_bytes_in_jetstream_follow_section_8(replicas, nats_server):
    """docs/formats.md §8: streams, subjects, headers and events as the document gives them."""
    import nats

    a = await replicas()
    try:
        await a.append("tenant/news", [Record(b"blob", MODEL, "p", 9)])
        await a.append_part("tenant/news", KEY, Part(0, b"b0", 2, 5, False))
        await a.append_part("tenant/news", KEY, Part(1, b"b1", 2, 6, True))
        prefix = a.layout.prefix
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            stream = f"{prefix}_{b'tenant'.hex()}"
            info = await js.stream_info(stream)
            assert info.config.subjects == [f"{prefix}.{b'tenant'.hex()}.>"] and info.state.messages == 3
            msgs = [await js.get_msg(stream, seq) for seq in (1, 2, 3)]
        finally:
            await nc.close()
        channel_subject = f"{prefix}.{b'tenant'.hex()}.{b'tenant/news'.hex()}"
        assert [m.subject for m in msgs] == [channel_subject + ".new", channel_subject + ".new",
                                             channel_subject + ".upd"]
        events = [log_pb2.LogEvent.FromString(m.data) for m in msgs]
        assert {e.writer for e in events} == {a.writer} and all(e.channel == "tenant/news" for e in events)
        assert events[0].append.first_offset == 0 and events[0].append.records[0].blob == b"blob"
        assert (events[1].part.creates, events[1].part.offset, events[1].part.index) == (True, 1, 0)
        assert (events[2].part.creates, events[2].part.offset, events[2].part.index, events[2].part.end) == (
            False, 1, 1, True)
        assert msgs[0].headers["Nats-Expected-Last-Subject-Sequence"] == "0"
        assert msgs[1].headers["Nats-Expected-Last-Subject-Sequence"] == "1"
        assert "Nats-Expected-Last-Subject-Sequence" not in msgs[2].headers
        assert all(len(m.headers["Nats-Msg-Id"]) == 32 for m in msgs)
    finally:
        await a.close()


async def test_retention_removes_old_messages_on_every_replica_and_from_jetstream(replicas, nats_server):
    import nats

    a, b = await replicas(), await replicas()
    try:
        await a.append("r", [Record(bytes(5000), MODEL) for _ in range(20)])      # offsets 0..19
        await a.append_part("r", KEY, Part(0, b"open", 4, 1, False))              # 20, still streaming
        await a.append("r", [Record(b"after", MODEL)])                            # 21
        assert await a.retain(Retention(max_bytes=30_000)) == 15                  # the newest 30 kB stay
        assert await a.first_offset("r") == 15
        await b.settled_end_offset("r")
        assert await b.first_offset("r") == 15 and (await b.read("r", 0, 1, 1 << 20))[0].offset == 15
        assert await b.retain(Retention(max_bytes=10)) == 5                       # a streaming message holds it
        assert await b.retain(Retention(max_bytes=10)) == 0
        await a.settled_end_offset("r")
        assert await a.first_offset("r") == 20
        nc = await nats.connect(nats_server.url)
        try:                                      # the first append's event is gone from JetStream
            first = await nc.jetstream().get_msg(b.layout.stream("r")[0], seq=1, subject=b.layout.subject("r", True),
                                                 next=True)
            assert log_pb2.LogEvent.FromString(first.data).part.offset == 20
        finally:
            await nc.close()
        c = await replicas()                      # a new replica: the same log from what is left
        try:
            assert (await c.first_offset("r"), await c.end_offset("r")) == (20, 22)
            assert [e.offset for e in await c.read("r", 0, 10, 1 << 20)] == [20, 21]
            assert await c.open_streams() == [("r", 20)]
            assert (await c.append("r", [Record(b"next", MODEL)]))[0].offset == 22   # never reused
        finally:
            await c.close()
    finally:
        await _close(a, b)


async def test_a_message_whose_replica_died_is_closed_by_another(replicas):
    """A replica that started before the message existed, and never wrote it, still aborts it once
    nobody wrote or touched it for the timeout."""
    from rvqstream.server.publish_stream import OpenStreams

    b = await replicas()
    watcher = OpenStreams(b, timeout_s=0.6)
    await watcher.start()
    a = await replicas()
    try:
        info = await a.append_part("orphan", KEY, Part(0, b"half a message", 14, 3, False))
        await a.close()                     # its replica is gone, with no abort
        assert await b.settled_end_offset("orphan") == 1
        for _ in range(100):
            await asyncio.sleep(0.1)
            if (await b.stream_state("orphan", info.offset))[0] == MessageState.ABORTED:
                break
        assert await b.stream_state("orphan", info.offset) == (MessageState.ABORTED, 1)
    finally:
        await watcher.close()
        await b.close()


async def test_a_purge_keeps_what_later_duplicates_need_on_a_new_replica(replicas):
    """A record that repeats a producer key is marked a duplicate in its event, so a replica that
    starts after the first copy's event was purged still gives every message the same offset."""
    a = await replicas()
    try:
        await a.append("d", [Record(bytes(20_000), MODEL, "p", 1)])                          # 0
        again = await a.append("d", [Record(b"x", MODEL, "q", 1), Record(bytes(20_000), MODEL, "p", 1)])
        assert [(x.offset, x.duplicate) for x in again] == [(1, False), (0, True)]
        assert await a.retain(Retention(max_bytes=10)) == 1                     # message 0 goes
        b = await replicas()
        try:
            assert (await b.first_offset("d"), await b.end_offset("d")) == (1, 2)
            assert (await b.append("d", [Record(b"y", MODEL)]))[0].offset == 2
            assert (await a.append("d", [Record(b"z", MODEL, "q", 1)]))[0].duplicate
        finally:
            await b.close()
    finally:
        await a.close()


async def test_a_view_follows_the_offsets_it_is_told(tmp_path):
    """The view (a SQLite log that follows JetStream): a gap in what it is told (events purged
    while it lagged) moves it up; being told of an offset it has passed is a divergence."""
    from rvqstream.server.sqlite_store import SQLiteLogStore
    from rvqstream.server.sqlite_writes import LogDiverged

    view = SQLiteLogStore(tmp_path / "view.sqlite3", durable=False)
    try:
        await view.append("c", [Record(b"0", MODEL), Record(b"1", MODEL)], at=0)
        await view.append("c", [Record(b"5", MODEL)], at=5)                   # 2..4 were purged unseen
        assert (await view.first_offset("c"), await view.end_offset("c")) == (5, 6)
        with pytest.raises(LogDiverged):
            await view.append("c", [Record(b"again", MODEL)], at=3)
        await view.append_part("c", KEY, Part(0, b"p", 1, 1, False), at=6)
        with pytest.raises(LogDiverged):
            await view.append_part("c", KEY, Part(0, b"p", 1, 1, False), at=7)     # the same key again
        assert await view.end_offset("c") == 7
    finally:
        await view.close()


async def test_a_replica_whose_view_diverged_stops_writing(replicas, nats_server):
    """An event the view cannot follow stops this replica's fold of the stream: its writes answer
    UNAVAILABLE (a restart rebuilds the view) instead of going on from a wrong state."""
    import nats

    a = await replicas()
    try:
        await a.append("x", [Record(b"0", MODEL), Record(b"1", MODEL)])
        stream = a._streams[a.layout.stream("x")[0]]
        bogus = log_pb2.LogEvent(channel="x", writer="someone else", append=log_pb2.LogAppend(
            first_offset=0, records=[log_pb2.LogRecord(blob=b"bad", model_id=MODEL)]))
        nc = await nats.connect(nats_server.url)
        try:                                   # a writer that broke the rules: it names offset 0 again
            await nc.jetstream().publish(a.layout.subject("x", True), bogus.SerializeToString())
        finally:
            await nc.close()
        for _ in range(50):
            if stream.broken is not None:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(LogUnavailable):
            await a.append("x", [Record(b"2", MODEL)])
    finally:
        await a.close()


async def test_a_nats_max_payload_below_the_largest_message_is_refused_at_start(tmp_path, nats_server):
    store = NatsLogStore([nats_server.url], tmp_path / "view", fresh_prefix(), max_message_bytes=16 << 20)
    try:
        with pytest.raises(ValueError, match="max_payload"):
            await store.start()
    finally:
        await store.close()


async def test_a_full_jetstream_is_log_full_and_the_log_goes_on(tmp_path):
    """JetStream out of storage is ``LogFull`` (RESOURCE_EXHAUSTED to a publisher, as a full disk is
    for the SQLite log), not UNAVAILABLE; what was stored stays readable."""
    from rvqstream.server.logstore import LogFull

    nats = NatsServer(tmp_path / "nats", max_file_store="2MB").start()
    store = NatsLogStore([nats.url], tmp_path / "view", fresh_prefix())
    try:
        await store.start()
        stored = 0
        with pytest.raises(LogFull, match="room"):
            for _ in range(40):
                await store.append("full", [Record(bytes(100_000), MODEL)])
                stored += 1
        assert 0 < stored < 40 and await store.end_offset("full") == stored
        assert len(await store.read("full", 0, 100, 1 << 30)) == stored
    finally:
        await store.close()
        nats.stop()
