"""The channel log, on each engine (SQLite, and JetStream through a replica's view): dense offsets
never reused, durability across reopen, dedup, live wait."""

import asyncio

import pytest

from rvqstream.server.app import channel_log as open_channel_log
from rvqstream.server.logstore import MessageState, Part, PartConflict, Record, StreamKey

pytestmark = pytest.mark.channel_suite   # on SQLite and on JetStream (conftest.py)


@pytest.fixture
def open_log(tmp_path, channel_log):
    """Opens the test's log: each call opens the same one again (a restart: for JetStream, a new
    replica with a new view of the same streams)."""
    config = channel_log.config(tmp_path / "data")

    async def open_log():
        store = open_channel_log(config)
        await store.start()
        return store

    return open_log

MODEL = "ab" * 32


def records(*blobs, producer="", first_seq=0):
    return [Record(b, MODEL, producer, first_seq + i) for i, b in enumerate(blobs)]


async def test_offsets_are_dense_per_channel(open_log):
    store = await open_log()
    try:
        assert await store.end_offset("a") is None
        acks = await store.append("a", records(b"x", b"y"))
        assert [a.offset for a in acks] == [0, 1]
        assert [a.offset for a in await store.append("b", records(b"z"))] == [0]
        assert [a.offset for a in await store.append("a", records(b"w"))] == [2]
        entries = await store.read("a", 1, 10, 1 << 20)
        assert [(e.offset, e.blob, e.model_id) for e in entries] == [(1, b"y", MODEL), (2, b"w", MODEL)]
        assert await store.end_offset("a") == 3
        assert await store.read("a", 3, 10, 1 << 20) == []
    finally:
        await store.close()


async def test_appends_survive_reopen_and_offsets_continue(open_log):
    store = await open_log()
    await store.append("a", records(*(bytes([i]) for i in range(5))))
    await store.close()
    store = await open_log()
    try:
        assert await store.end_offset("a") == 5
        assert [a.offset for a in await store.append("a", records(b"n"))] == [5]
        assert [e.blob for e in await store.read("a", 0, 100, 1 << 20)] == [bytes([i]) for i in range(5)] + [b"n"]
    finally:
        await store.close()


async def test_producer_sequence_is_stored_once(open_log):
    store = await open_log()
    try:
        first = await store.append("a", records(b"p", b"q", producer="prod"))
        again = await store.append("a", records(b"q", b"r", producer="prod", first_seq=1))
        assert [(a.offset, a.duplicate) for a in first] == [(0, False), (1, False)]
        assert [(a.offset, a.duplicate) for a in again] == [(1, True), (2, False)]
        assert [e.blob for e in await store.read("a", 0, 10, 1 << 20)] == [b"p", b"q", b"r"]
    finally:
        await store.close()


async def test_concurrent_appends_are_group_committed_without_gaps(open_log):
    store = await open_log()
    try:
        acks = await asyncio.gather(*(store.append("a", records(bytes([i]))) for i in range(50)))
        assert sorted(a[0].offset for a in acks) == list(range(50))
    finally:
        await store.close()


async def test_wait_returns_when_the_offset_is_written(open_log):
    store = await open_log()
    try:
        await store.append("a", records(b"0"))
        await asyncio.wait_for(store.wait("a", 0), 5)      # already there
        waiter = asyncio.create_task(store.wait("a", 1))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await store.append("a", records(b"1"))
        await asyncio.wait_for(waiter, 5)
    finally:
        await store.close()


KEY = StreamKey("prod", 7, MODEL, 1)


def part(index, batch, end=False):
    return Part(index, batch, len(batch), 1000 + index, end)


async def test_streamed_message_gets_its_offset_at_its_first_part_and_grows(open_log):
    store = await open_log()
    try:
        await store.append("a", records(b"whole"))
        info = await store.append_part("a", KEY, part(0, b"p0"))
        assert (info.offset, info.state, info.parts, info.text_bytes) == (1, MessageState.STREAMING, 1, 2)
        await store.append("a", records(b"after"))          # offsets go on while the stream is open
        info = await store.append_part("a", KEY, part(1, b"p11", end=True))
        assert (info.offset, info.state, info.parts, info.text_bytes, info.crc) == (
            1, MessageState.COMPLETE, 2, 5, 1001)
        entries = await store.read("a", 0, 10, 1 << 20)
        assert [(e.offset, e.streamed, e.state) for e in entries] == [
            (0, False, MessageState.COMPLETE), (1, True, MessageState.COMPLETE), (2, False, MessageState.COMPLETE)]
        assert await store.read_parts("a", 1, 0, 1 << 20) == ([b"p0", b"p11"], MessageState.COMPLETE)
        assert await store.read_parts("a", 1, 1, 1 << 20) == ([b"p11"], MessageState.COMPLETE)
        assert (await store.find_stream("a", "prod", 7)).parts == 2
        assert await store.find_stream("a", "prod", 8) is None
    finally:
        await store.close()


async def test_parts_survive_reopen_and_pages_are_bounded_by_bytes(open_log):
    store = await open_log()
    for i in range(5):
        await store.append_part("a", KEY, part(i, bytes([i]) * 100))
    await store.close()
    store = await open_log()
    try:
        batches, state = await store.read_parts("a", 0, 1, 250)
        assert batches == [bytes([1]) * 100, bytes([2]) * 100] and state == MessageState.STREAMING
        assert await store.open_streams() == [("a", 0)]
        info = await store.find_stream("a", "prod", 7)
        assert (info.parts, info.text_bytes, info.crc) == (5, 500, 1004)
    finally:
        await store.close()


async def test_a_stale_or_closed_writer_conflicts_and_the_rest_of_its_group_commits(open_log):
    store = await open_log()
    try:
        await store.append_part("a", KEY, part(0, b"x"))
        results = await asyncio.gather(store.append_part("a", KEY, part(0, b"again")),
                                       store.append("a", records(b"honest")), return_exceptions=True)
        assert isinstance(results[0], PartConflict)
        assert [a.offset for a in results[1]] == [1]
        assert await store.abort("a", 0) is True
        assert await store.abort("a", 0) is False
        try:
            await store.append_part("a", KEY, part(1, b"late"))
            raise AssertionError("a part after the abort was stored")
        except PartConflict:
            pass
        assert (await store.read("a", 0, 1, 1 << 20))[0].state == MessageState.ABORTED
        assert await store.open_streams() == []
    finally:
        await store.close()


async def test_a_commit_whose_writer_was_cancelled_still_wakes_live_readers(open_log):
    store = await open_log()
    try:
        await store.append("a", records(b"0"))
        waiter = asyncio.create_task(store.wait("a", 1))
        await asyncio.sleep(0.05)
        writer = asyncio.create_task(store.append("a", records(b"1")))
        await asyncio.sleep(0)          # the write is queued for the writer thread ...
        writer.cancel()                 # ... and its caller goes away before the commit
        await asyncio.wait_for(waiter, 5)
        assert [e.blob for e in await store.read("a", 0, 10, 1 << 20)] == [b"0", b"1"]
    finally:
        await store.close()
