"""Every resource a client can consume has a limit: each attack on a real server gets a clear status
while the server keeps serving others."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest
import zstandard

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc
from rvqstream.client import Client, RvqstreamError
from rvqstream.models import Codec
from rvqstream.models.blob import Mode, header
from rvqstream.models.coding import text_check
from rvqstream.models.errors import Cancel
from rvqstream.server import ServerConfig
from rvqstream.server.errors import RETRY_AFTER_KEY, rpc_errors
from rvqstream.server.logstore import Record, Retention
from rvqstream.server.sqlite_store import SQLiteLogStore
from rvqstream.wire import MAX_SEQUENCE
from tests.conftest import ServerProcess, ServerThread

BOMB_BYTES = 1 << 30


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


@pytest.fixture(scope="module")
def zstd_bomb(codec) -> bytes:
    """A fallback-form blob of ~32 KiB whose zstd data expands to 1 GiB of zeros."""
    cctx = zstandard.ZstdCompressor(level=1, write_checksum=False, write_content_size=False)
    obj, out, zeros = cctx.compressobj(), [], bytes(1 << 20)
    for _ in range(BOMB_BYTES >> 20):
        out.append(obj.compress(zeros))
    out.append(obj.flush())
    payload = b"".join(out)[4:]           # blobs carry zstd data without its magic
    check = text_check(bytes(BOMB_BYTES), 16).to_bytes(2, "big")
    return header(Mode.ZSTD, codec.model_id) + payload + check


@pytest.fixture(scope="module")
def costly_blob(codec) -> bytes:
    """A valid exact-tier blob of 2,500 words: decoding it takes the model a while."""
    words = ["the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be", "at", "by", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were", "all", "her", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made"]
    rng = random.Random(7)
    text = " ".join(rng.choice(words) for _ in range(2500))
    blob = header(Mode.EXACT, codec.model_id) + codec._blobs._exact(text, 0, Cancel())  # the model form
    assert codec.decompress(blob) == text
    return blob


def vm_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def retry_trailer(error: grpc.RpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get(RETRY_AFTER_KEY)


def test_zstd_bomb_is_refused_before_it_expands(tmp_path, zstd_bomb, codec):
    assert len(zstd_bomb) < 48 << 10
    proc = ServerProcess(tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            stub.Decompress(codec_pb2.DecompressRequest(blob=codec.compress("warm up")), timeout=30)
            before = vm_kb(proc.proc.pid, "VmRSS")
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as e:
                    stub.Decompress(codec_pb2.DecompressRequest(blob=zstd_bomb), timeout=30)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # the same bomb as a fallback frame in a batch cannot be made: a batch's fallback
            # payload is bounded by the batch, and the decoder's output by the message limit
            grown = vm_kb(proc.proc.pid, "VmHWM") - before
            assert grown < 50 << 10, f"server grew by {grown} kB"
            assert stub.Decompress(codec_pb2.DecompressRequest(blob=codec.compress("still here")),
                                   timeout=30).text == "still here"
    finally:
        proc.close()


def test_unary_model_work_stops_at_its_time_limit(tmp_path, registry, costly_blob):
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", max_call_s=0.2), registry).start()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            t = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                stub.Decompress(codec_pb2.DecompressRequest(blob=costly_blob), timeout=30)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t < 5
    finally:
        srv.close()


def test_a_caller_that_leaves_frees_the_pool(tmp_path, registry, costly_blob):
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", unary_workers=1, unary_queue=0), registry).start()
    try:
        pool = srv.server.pool
        with grpc.insecure_channel(srv.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            for _ in range(3):      # each gives up after 0.2 s; its work must stop, not run on
                with pytest.raises(grpc.RpcError) as e:
                    stub.Decompress(codec_pb2.DecompressRequest(blob=costly_blob), timeout=0.2)
                assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                deadline = time.monotonic() + 2     # the whole decode takes far longer
                while pool._places._value < pool.capacity:
                    assert time.monotonic() < deadline, "the abandoned work kept running"
                    time.sleep(0.01)
    finally:
        srv.close()


def test_a_full_pool_refuses_with_a_retry_hint(tmp_path, registry, costly_blob):
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", unary_workers=1, unary_queue=0), registry).start()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            first = stub.Decompress.future(codec_pb2.DecompressRequest(blob=costly_blob), timeout=60)
            deadline = time.monotonic() + 10
            while srv.server.pool._places._value > 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as e:
                stub.Decompress(codec_pb2.DecompressRequest(blob=costly_blob), timeout=60)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert retry_trailer(e.value) is not None
            assert first.result().text
    finally:
        srv.close()


def test_a_bad_sequence_fails_only_its_own_call(server):
    errors, acks = [], []

    def publish(i: int, sequence: int) -> None:
        with grpc.insecure_channel(server.target) as ch:
            stub = channel_pb2_grpc.ChannelServiceStub(ch)
            reqs = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(
                channel="seq", producer_id=f"p{i}"))]
            reqs += [channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
                text_utf8=f"message {i}.{k}".encode(), sequence=sequence + k)) for k in range(10)]
            try:
                acks.extend(stub.Publish(iter(reqs), timeout=60))
            except grpc.RpcError as e:
                errors.append((i, e.code()))

    threads = [threading.Thread(target=publish, args=(i, 1 << 63 if i == 7 else 1)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [(7, grpc.StatusCode.OUT_OF_RANGE)]
    assert len(acks) == 150 and len({a.offset for a in acks}) == 150


def test_the_largest_sequence_is_taken(channel):
    stub = channel_pb2_grpc.ChannelServiceStub(channel)
    reqs = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel="seq", producer_id="p")),
            channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=b"x", sequence=MAX_SEQUENCE))]
    (ack,) = stub.Publish(iter(reqs), timeout=30)
    assert ack.sequence == MAX_SEQUENCE


def test_producer_id_is_checked_and_not_echoed_in_full(channel):
    stub = channel_pb2_grpc.ChannelServiceStub(channel)
    for bad in ("x" * 20_000, "spaces are not allowed", "ünïcode"):
        reqs = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel="ok", producer_id=bad)),
                channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=b"x", sequence=1))]
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Publish(iter(reqs), timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(e.value.details()) < 300


def test_long_channel_name_is_not_echoed_in_full(channel):
    stub = channel_pb2_grpc.ChannelServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        next(stub.Subscribe(channel_pb2.SubscribeRequest(channel="c" * 50_000), timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(e.value.details()) < 300


async def test_subscriber_pages_are_bounded_by_bytes(tmp_path):
    store = SQLiteLogStore(tmp_path / "log.sqlite3")
    try:
        await store.append("big", [Record(bytes(100_000), "m" * 64) for _ in range(5)])
        assert len(await store.read("big", 0, 64, 150_000)) == 1
        assert len(await store.read("big", 0, 64, 250_000)) == 2
        assert len(await store.read("big", 0, 64, 10)) == 1      # one entry at least
        assert len(await store.read("big", 0, 3, 1 << 30)) == 3
    finally:
        await store.close()


async def test_retention_by_bytes_and_age_gives_space_back(tmp_path):
    path = tmp_path / "log.sqlite3"
    store = SQLiteLogStore(path)
    try:
        await store.append("r", [Record(bytes(50_000), "m" * 64) for _ in range(20)])
        await store.append("keep", [Record(b"small", "m" * 64)])
        size = path.stat().st_size + (tmp_path / "log.sqlite3-wal").stat().st_size
        assert await store.retain(Retention(max_bytes=200_000)) == 16
        assert await store.first_offset("r") == 16
        assert [e.offset for e in await store.read("r", 0, 64, 1 << 30)] == list(range(16, 20))
        assert await store.end_offset("r") == 20
        await store.append("r", [Record(b"new", "m" * 64)])
        assert (await store.read("r", 20, 1, 100))[0].offset == 20   # offsets are never reused
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE entries SET created_at = created_at - 7200")
        assert await store.retain(Retention(max_age_s=3600)) == 6
        assert await store.first_offset("keep") == 1 and await store.first_offset("r") == 21
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert path.stat().st_size < size / 4


@pytest.mark.channel_suite
def test_subscribers_start_at_the_first_kept_offset(tmp_path, registry, channel_log):
    srv = ServerThread(channel_log.config(tmp_path / "d", retention_bytes=300), registry).start()
    try:
        with Client(srv.target) as client:
            client.publish("news", [f"message number {i} " * 20 for i in range(30)])
            asyncio.run_coroutine_threadsafe(srv.server.store.retain(srv.server.retention), srv.loop).result()
            first = asyncio.run_coroutine_threadsafe(srv.server.store.first_offset("news"), srv.loop).result()
            assert 0 < first < 30
            got = []
            for msg in client.subscribe("news", 0):
                got.append(msg.offset)
                if msg.offset == 29:
                    break
            assert got == list(range(first, 30))
            deltas = []
            for d in client.follow("news", 0):
                deltas.append(d.offset)
                if d.offset == 29:
                    break
            assert deltas[0] == first
        with grpc.insecure_channel(srv.target) as ch:
            with pytest.raises(grpc.RpcError) as err:
                channel_pb2_grpc.ChannelServiceStub(ch).FetchMessage(
                    channel_pb2.FetchMessageRequest(channel="news", offset=0), timeout=30)
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        srv.close()


def test_a_full_log_refuses_publishing_and_keeps_serving(tmp_path, registry):
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", max_log_bytes=48 << 10), registry).start()
    rng = random.Random(3)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            stub = channel_pb2_grpc.ChannelServiceStub(ch)
            reqs = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel="full"))]
            reqs += [channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=" ".join(
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                for _ in range(60)).encode())) for _ in range(400)]
            acks = []
            with pytest.raises(grpc.RpcError) as e:
                acks.extend(stub.Publish(iter(reqs), timeout=120))   # keeps the acks before the error
            assert acks, "the log took messages before it was full"
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert retry_trailer(e.value) is not None and "full" in e.value.details()
            first = next(stub.Subscribe(channel_pb2.SubscribeRequest(channel="full"), timeout=30))
            assert first.message.offset == 0
    finally:
        srv.close()


def test_publishing_stops_at_the_free_space_water_mark(tmp_path, registry):
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", min_free_bytes=1 << 60), registry).start()
    try:
        with Client(srv.target, reconnect_timeout_s=0.5) as client:
            t = time.monotonic()
            with pytest.raises(RvqstreamError) as e:
                client.publish("c", ["x"])
            assert e.value.code == "RESOURCE_EXHAUSTED" and "disk" in e.value.message
            assert time.monotonic() - t >= 0.5      # retried as told before giving up
            with pytest.raises(RvqstreamError) as e, client.open_stream("c") as w:
                w.write("streamed")
                w.end_message()
            assert e.value.code == "RESOURCE_EXHAUSTED"
    finally:
        srv.close()


async def test_internal_errors_are_generic_with_a_correlation_id(caplog):
    class Broken:
        @rpc_errors
        async def Call(self, request, context):
            raise RuntimeError("secret detail of the failure")

    server = grpc.aio.server()
    broken = Broken()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", {
        "Call": grpc.unary_unary_rpc_method_handler(broken.Call)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        with caplog.at_level(logging.ERROR):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                with pytest.raises(grpc.RpcError) as e:
                    await ch.unary_unary("/t.T/Call")(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in e.value.details() and "correlation id" in e.value.details()
        correlation = e.value.details().rsplit(" ", 1)[1].rstrip(")")
        assert any(correlation in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        await server.stop(0)


def test_followers_ride_out_the_connection_age_limit(tmp_path, registry):
    """The server asks connections to go away after ``connection_age_s``; a follower's calls end
    with the connection and the SDK resumes where it was."""
    config = ServerConfig(data_dir=tmp_path / "d", connection_age_s=1.0, connection_age_grace_s=0.5)
    srv = ServerThread(config, registry).start()
    try:
        with Client(srv.target) as producer, Client(srv.target) as follower:
            got: list[int] = []
            done = threading.Event()

            def follow() -> None:
                for d in follower.follow("aged", 0):
                    if d.done:
                        got.append(d.offset)
                    if d.offset == 9 and d.done:
                        done.set()
                        return

            producer.publish("aged", ["message 0"])
            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            for i in range(1, 10):
                time.sleep(0.4)
                producer.publish("aged", [f"message {i}"])
            assert done.wait(30)
            assert got == list(range(10))
    finally:
        srv.close()
