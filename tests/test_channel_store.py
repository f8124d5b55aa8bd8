"""The SQLite channel log: dense offsets never reused, durability across reopen, dedup, live wait."""

import asyncio

from rvqstream.server.logstore import Record, SQLiteLogStore

MODEL = "ab" * 32


def records(*blobs, producer="", first_seq=0):
    return [Record(b, MODEL, producer, first_seq + i) for i, b in enumerate(blobs)]


async def test_offsets_are_dense_per_channel(tmp_path):
    store = SQLiteLogStore(tmp_path / "log.sqlite3")
    try:
        assert await store.end_offset("a") is None
        acks = await store.append("a", records(b"x", b"y"))
        assert [a.offset for a in acks] == [0, 1]
        assert [a.offset for a in await store.append("b", records(b"z"))] == [0]
        assert [a.offset for a in await store.append("a", records(b"w"))] == [2]
        entries = await store.read("a", 1, 10)
        assert [(e.offset, e.blob, e.model_id) for e in entries] == [(1, b"y", MODEL), (2, b"w", MODEL)]
        assert await store.end_offset("a") == 3
        assert await store.read("a", 3, 10) == []
    finally:
        await store.close()


async def test_appends_survive_reopen_and_offsets_continue(tmp_path):
    path = tmp_path / "log.sqlite3"
    store = SQLiteLogStore(path)
    await store.append("a", records(*(bytes([i]) for i in range(5))))
    await store.close()
    store = SQLiteLogStore(path)
    try:
        assert await store.end_offset("a") == 5
        assert [a.offset for a in await store.append("a", records(b"n"))] == [5]
        assert [e.blob for e in await store.read("a", 0, 100)] == [bytes([i]) for i in range(5)] + [b"n"]
    finally:
        await store.close()


async def test_producer_sequence_is_stored_once(tmp_path):
    store = SQLiteLogStore(tmp_path / "log.sqlite3")
    try:
        first = await store.append("a", records(b"p", b"q", producer="prod"))
        again = await store.append("a", records(b"q", b"r", producer="prod", first_seq=1))
        assert [(a.offset, a.duplicate) for a in first] == [(0, False), (1, False)]
        assert [(a.offset, a.duplicate) for a in again] == [(1, True), (2, False)]
        assert [e.blob for e in await store.read("a", 0, 10)] == [b"p", b"q", b"r"]
    finally:
        await store.close()


async def test_concurrent_appends_are_group_committed_without_gaps(tmp_path):
    store = SQLiteLogStore(tmp_path / "log.sqlite3")
    try:
        acks = await asyncio.gather(*(store.append("a", records(bytes([i]))) for i in range(50)))
        assert sorted(a[0].offset for a in acks) == list(range(50))
    finally:
        await store.close()


async def test_wait_returns_when_the_offset_is_written(tmp_path):
    store = SQLiteLogStore(tmp_path / "log.sqlite3")
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
