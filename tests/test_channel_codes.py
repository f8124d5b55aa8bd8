"""Message codes against a real server and SQLite log: codes made at publish (whole and streamed),
Search by text and by code, SyncCodes pages and the SDK's index, near-duplicates flagged and
dropped, and every bad request."""

from __future__ import annotations

import grpc
import pytest

from rvqstream._proto import channel_pb2, channel_pb2_grpc
from rvqstream.client import AsyncClient, Client, RvqstreamError
from rvqstream.models.code_model import shipped_code_model
from tests.conftest import ServerThread

pytestmark = pytest.mark.channel_suite   # on SQLite and on JetStream (conftest.py)

TEXTS = [
    "The kernel scheduler picks the next task to run on each CPU core.",
    "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
    "The striker scored twice in the second half to win the cup final.",
    "Use git rebase to move your branch on top of the latest main branch.",
    "A heavy storm is expected along the coast with winds over 100 km/h.",
    "The committee approved the budget for the new public library.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Our quarterly revenue grew by twelve percent compared to last year.",
    "The patient was given antibiotics for a bacterial infection.",
    "Install the package with pip and import it in your Python script.",
]


@pytest.fixture
def stub(channel):
    return channel_pb2_grpc.ChannelServiceStub(channel)


def status_of(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value


def test_codes_are_made_at_publish_and_synced_to_the_device(server, cache_dir):
    model = shipped_code_model()
    with Client(server.target, cache_dir=cache_dir) as client:
        assert client.publish("kb", TEXTS) == list(range(len(TEXTS)))
        index = client.codes("kb")
        assert list(index.offsets) == list(range(len(TEXTS))) and index.next_offset == len(TEXTS)
        assert (index.codes == model.codes(TEXTS)).all()           # what the server stored
        for i, text in enumerate(TEXTS):                            # on the device ...
            assert index.search(model.embed([text])[0], k=1)[0].offset == i
            hits = client.search("kb", text, k=3)                   # ... and on the server
            assert hits[0].offset == i and len(hits) == 3 and hits[0].score >= hits[1].score
        # in other words: a query that shares few words with the message still finds it
        assert client.search("kb", "how do I bake a loaf", k=1)[0].offset == 1
        assert client.search("kb", "football match result", k=1)[0].offset == 2
        # a code as the query; fewer stages
        code = bytes(model.codes([TEXTS[4]])[0])
        assert client.search("kb", code, k=1)[0].offset == 4
        assert client.search("kb", code[:4], k=1, stages=4)[0].offset == 4
        # a later sync goes on where the last one ended
        client.publish("kb", ["Bake the cake at a low heat so it does not crack."])
        again = client.codes("kb", index.next_offset, index=index)
        assert again is index and len(index) == len(TEXTS) + 1 and index.next_offset == len(TEXTS) + 1


def test_sync_pages_cut_codes_to_the_stages_asked(server, stub, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        client.publish("kb", TEXTS)
    pages = list(stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="kb", stages=4)))
    assert len(pages) == 1 and pages[0].first_offset == 0 and pages[0].stages == 4
    assert len(pages[0].codes) == 4 * len(TEXTS) and pages[0].next_offset == len(TEXTS)
    assert pages[0].code_model_id == shipped_code_model().model_id
    full = list(stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="kb", from_offset=3)))
    assert full[0].first_offset == 3 and len(full[0].codes) == 16 * (len(TEXTS) - 3)
    assert bytes(full[0].codes[:4]) == bytes(pages[0].codes[12:16])       # a prefix of the same code
    tail = list(stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="kb", from_offset=len(TEXTS))))
    assert len(tail) == 1 and tail[0].codes == b"" and tail[0].next_offset == len(TEXTS)


async def test_streamed_messages_get_their_code_when_they_end(server, cache_dir):
    async with AsyncClient(server.target, cache_dir=cache_dir) as client:
        await client.publish("live", TEXTS[:2])
        async with client.open_stream("live", max_delay_ms=20) as w:
            await w.write("The striker scored twice ")
            await w.flush()
            index = await client.codes("live")
            assert list(index.offsets) == [0, 1] and index.next_offset == 2   # stops at the open message
            await w.write("in the second half and the team won the final.")
            await w.end_message()
        await client.publish("live", TEXTS[3:4])
        await client.codes("live", index.next_offset, index=index)
        assert list(index.offsets) == [0, 1, 2, 3] and index.next_offset == 4
        hits = await client.search("live", "who won the football final", k=1)
        assert hits[0].offset == 2


def test_near_duplicates_are_flagged_or_dropped(server, stub, cache_dir):
    def publish(texts, drop=False):
        reqs = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(
            channel="dup", producer_id="p", drop_near_duplicates=drop))]
        reqs += [channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
            text_utf8=t.encode(), sequence=publish.seq + i)) for i, t in enumerate(texts)]
        publish.seq += len(texts)
        return list(stub.Publish(iter(reqs)))
    publish.seq = 0

    acks = publish(TEXTS[:3])
    assert not any(a.near_duplicate for a in acks)
    retold = "The striker scored twice in the second half to win the cup final!"
    (ack,) = publish([retold])
    assert ack.near_duplicate and ack.near_duplicate_of == 2 and not ack.dropped and ack.offset == 3
    # dropped: nothing stored, the ack names the earlier message; within one batch too
    acks = publish(["the kernel scheduler picks the next task to run on each cpu core",
                    "Water boils at 100 degrees Celsius at sea level.",
                    "At sea level, water boils at 100 degrees Celsius.",
                    "Water boils at 90 degrees Celsius at sea level."], drop=True)
    assert acks[0].dropped and acks[0].offset == 0 and acks[0].near_duplicate_of == 0
    assert not acks[1].near_duplicate and acks[1].offset == 4
    assert acks[2].dropped and acks[2].offset == 4
    # alike, but it states another number: another fact, stored
    assert not acks[3].near_duplicate and not acks[3].dropped and acks[3].offset == 5
    assert [p.next_offset for p in stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="dup"))][-1] == 6
    with Client(server.target, cache_dir=cache_dir) as client:
        assert [m.text for m in _take(client.subscribe("dup"), 6)][3:] == [
            retold, "Water boils at 100 degrees Celsius at sea level.",
            "Water boils at 90 degrees Celsius at sea level."]


def _take(it, n):
    out = []
    for m in it:
        out.append(m)
        if len(out) == n:
            return out


def test_codes_survive_a_restart(server_config, registry, cache_dir):
    srv = ServerThread(server_config, registry).start()
    try:
        with Client(srv.target, cache_dir=cache_dir) as client:
            client.publish("kb", TEXTS)
            assert client.search("kb", TEXTS[5], k=1)[0].offset == 5
    finally:
        srv.close()
    srv = ServerThread(server_config, registry).start()
    try:
        with Client(srv.target, cache_dir=cache_dir) as client:
            assert client.search("kb", TEXTS[5], k=1)[0].offset == 5      # read back from the log
            client.publish("kb", ["A new budget was approved by the library committee."])
            assert {h.offset for h in client.search("kb", TEXTS[5], k=2)} == {5, 10}
    finally:
        srv.close()


def test_bad_requests(server, stub, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        client.publish("kb", TEXTS[:2])
        with pytest.raises(RvqstreamError) as err:
            client.search("nope", "x")
        assert err.value.code == "NOT_FOUND"
    cases = [
        (channel_pb2.SearchRequest(channel="kb"), grpc.StatusCode.INVALID_ARGUMENT, "query"),
        (channel_pb2.SearchRequest(channel="kb", text="x", k=1001), grpc.StatusCode.INVALID_ARGUMENT, "k"),
        (channel_pb2.SearchRequest(channel="kb", text="x", stages=17), grpc.StatusCode.INVALID_ARGUMENT, "stages"),
        (channel_pb2.SearchRequest(channel="kb", code=bytes(17)), grpc.StatusCode.INVALID_ARGUMENT, "code"),
        (channel_pb2.SearchRequest(channel="kb", text="x" * (65 << 10)), grpc.StatusCode.INVALID_ARGUMENT, "text"),
        (channel_pb2.SearchRequest(channel="bad name", text="x"), grpc.StatusCode.INVALID_ARGUMENT, "channel"),
    ]
    for request, code, word in cases:
        e = status_of(lambda r=request: stub.Search(r))
        assert e.code() == code and word in e.details(), (request, e.details())
    e = status_of(lambda: list(stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="kb", from_offset=3))))
    assert e.code() == grpc.StatusCode.OUT_OF_RANGE
    e = status_of(lambda: list(stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="kb", stages=99))))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.Search(channel_pb2.SearchRequest(channel="kb", text="x")).searched == 2   # still serving


def test_store_keeps_codes_beside_messages(tmp_path):
    import asyncio

    from rvqstream.server.logstore import Code, MessageState, Part, Record, Retention, StreamKey
    from rvqstream.server.sqlite_store import SQLiteLogStore

    async def run():
        store = SQLiteLogStore(tmp_path / "log.sqlite3")
        try:
            recs = [Record(b"a", "m" * 64, code=Code("c" * 64, b"\x01\x02")),
                    Record(b"b", "m" * 64, code=Code("c" * 64, b"\x03\x04", near_record=0)),
                    Record(b"c", "m" * 64)]
            await store.append("ch", recs)
            await store.append_part("ch", StreamKey("p", 0, "m" * 64, 0), Part(0, b"x", 1, 0, False))
            entries = await store.read_codes("ch", 0, 10)
            assert [(e.offset, e.state, e.code and e.code.code) for e in entries] == [
                (0, MessageState.COMPLETE, b"\x01\x02"), (1, MessageState.COMPLETE, b"\x03\x04"),
                (2, MessageState.COMPLETE, None), (3, MessageState.STREAMING, None)]
            assert entries[1].code.near_of == 0 and entries[0].code.near_of is None
            await store.append_part("ch", StreamKey("p", 0, "m" * 64, 0),
                                    Part(1, b"y", 1, 0, True, Code("c" * 64, b"\x05\x06", near_of=1)))
            last = (await store.read_codes("ch", 3, 10))[0]
            assert last.code.code == b"\x05\x06" and last.code.near_of == 1 and last.state == MessageState.COMPLETE
            await store.retain(Retention(max_bytes=2))
            first = await store.first_offset("ch")
            assert first > 0 and (await store.read_codes("ch", 0, 10))[0].offset == first
        finally:
            await store.close()

    asyncio.run(run())


def test_readme_example(server, cache_dir):
    with Client(server.target, cache_dir=cache_dir) as client:
        assert client.publish("news", ["The deploy finished at noon.", "second"]) == [0, 1]
        with client.open_stream("news", max_delay_ms=200) as w:
            for token in ["Streamed ", "as it ", "is written."]:
                w.write(token)
            assert w.end_message() == 2
        hits = client.search("news", "what was streamed", k=10)
        assert hits[0].offset == 2 and len(hits) == 3
        assert client.publish("news", ["the deploy was finished at noon"], drop_near_duplicates=True) == [0]
        model = shipped_code_model()
        index = client.codes("news")
        top = index.search(model.query("what was streamed"), k=3)
        assert top[0].offset == 2 and client.fetch("news", 2).text == "Streamed as it is written."
        client.publish("news", ["third"])
        index = client.codes("news", index.next_offset, index=index)
        assert list(index.offsets) == [0, 1, 2, 3]


def test_numbers_decide_between_alike_messages():
    from rvqstream.models.code_model import numbers, numbers_agree

    assert numbers("paid $1,200.50 at 10:30 for order 42") == {"1,200.50", "10:30", "42"}
    assert numbers_agree(numbers("no numbers"), numbers("none here either"))
    assert numbers_agree(numbers("order 42 shipped at 10:30"), numbers("at 10:30 order 42 shipped"))
    assert not numbers_agree(numbers("order 42 shipped"), numbers("order 43 shipped"))
    assert not numbers_agree(numbers("order 42 shipped"), numbers("an order shipped"))


def test_recent_windows_are_bounded():
    import numpy as np

    from rvqstream.server.channel_codes import RecentEmbeddings

    recent = RecentEmbeddings(window=3, budget=5, dim=4)
    e = np.eye(4, dtype=np.float32)
    recent.add("a", [0, 1, 2, 3], e, [frozenset()] * 4)          # the window keeps the last 3
    assert recent.best("a", e[0], frozenset(), 0.9) is None
    assert recent.best("a", e[3], frozenset(), 0.9).offset == 3
    assert recent.best("a", e[3], frozenset({"7"}), 0.9) is None  # the numbers disagree
    recent.add("b", [0, 1, 2], e[:3], [frozenset()] * 3)          # 6 held > 5: "a" is dropped
    assert recent.best("a", e[3], frozenset(), 0.9) is None
    assert recent.best("b", e[1], frozenset(), 0.9).offset == 1


def test_codes_noted_while_the_index_reads_the_log_are_counted_once(tmp_path):
    import asyncio

    from rvqstream.server.channel_codes import ChannelCodes
    from rvqstream.server.logstore import Code, Record
    from rvqstream.server.sqlite_store import SQLiteLogStore

    model = shipped_code_model()

    class GatedStore(SQLiteLogStore):
        """Holds the index's first read of the log until the test lets it go."""
        gate: asyncio.Event

        async def read_codes(self, channel, from_offset, limit):
            await self.gate.wait()
            return await super().read_codes(channel, from_offset, limit)

    async def run():
        store = GatedStore(tmp_path / "log.sqlite3")
        store.gate = asyncio.Event()
        try:
            codes = [Code(model.model_id, bytes([i] * model.stages)) for i in range(4)]
            await store.append("ch", [Record(b"x", "m" * 64, code=c) for c in codes[:3]])
            channel_codes = ChannelCodes(store, model, 100)
            loading = asyncio.create_task(channel_codes.index("ch"))
            await asyncio.sleep(0.05)                                  # the load waits at the gate
            (appended,) = await store.append("ch", [Record(b"x", "m" * 64, code=codes[3])])
            channel_codes.note("ch", [1, appended.offset], [codes[1], codes[3]])   # 1 is in the log already
            store.gate.set()
            index = await loading
            assert sorted(index.offsets) == [0, 1, 2, 3]
            channel_codes.note("ch", [4], [Code(model.model_id, bytes(model.stages))])   # after the load
            assert sorted((await channel_codes.index("ch")).offsets) == [0, 1, 2, 3, 4]
        finally:
            await store.close()

    asyncio.run(run())


def test_a_server_without_message_codes(tmp_path, registry, cache_dir, channel_log):
    srv = ServerThread(channel_log.config(tmp_path / "data", message_codes=False), registry).start()
    try:
        with Client(srv.target, cache_dir=cache_dir) as client:
            assert client.publish("kb", TEXTS[:3]) == [0, 1, 2]
            with client.open_stream("kb") as w:
                w.write("streamed without a code")
                assert w.end_message() == 3
            assert [m.text for m in _take(client.subscribe("kb"), 4)][3] == "streamed without a code"
            for call in (lambda: client.search("kb", "x"), lambda: client.codes("kb"),
                         lambda: client.publish("kb", ["y"], drop_near_duplicates=True)):
                with pytest.raises(RvqstreamError) as err:
                    call()
                assert err.value.code == "FAILED_PRECONDITION" and "--no-message-codes" in err.value.message
    finally:
        srv.close()


def test_a_message_continued_after_a_reconnect_is_coded_from_all_its_text(server, stub):
    from rvqstream._proto import frame_pb2

    def config():
        return channel_pb2.PublishStreamRequest(config=channel_pb2.PublishStreamConfig(
            channel="resumed", producer_id="px"))

    def chunk(text: str, **kw):
        return channel_pb2.PublishStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=text.encode(), **kw))

    first, rest = "Preheat the oven to 200 degrees and bake the bread ", "for forty minutes."
    out = list(stub.PublishStream(iter([config(), chunk(first, flush=True)])))    # the call ends mid-message
    assert out[-1].ack.durable_bytes == len(first)
    resumed = list(stub.PublishStream(iter([config(), chunk(rest, end_message=True)])))
    assert resumed[0].header.resume.durable_bytes == len(first)
    assert resumed[-1].ack.state == channel_pb2.MESSAGE_STATE_COMPLETE
    (page,) = stub.SyncCodes(channel_pb2.SyncCodesRequest(channel="resumed"))
    assert page.codes == bytes(shipped_code_model().codes([first + rest])[0])


def test_a_device_fetches_a_code_model_it_does_not_ship(tmp_path, registry, cache_dir, channel_log):
    import numpy as np

    from models.train_codes import fit
    from rvqstream.models.code_model import CodeModel
    from rvqstream.server.registry import ModelRegistry

    shipped = shipped_code_model()
    x = np.random.default_rng(0).standard_normal((1500, shipped.quantizer.dim)).astype(np.float32)
    files = {**{n: b for n, b in shipped.bundle_files().items() if n != "manifest.json"},
             "rvq.npz": fit(x / np.linalg.norm(x, axis=1, keepdims=True), 4, iters=2, log=lambda s: None).to_bytes()}
    other = CodeModel(files, {"config": {"kind": "codes", "near_duplicate_score": 0.8}})
    assert other.model_id != shipped.model_id
    own = ModelRegistry([registry.get(m) for m in registry.ids()], codes=other)
    srv = ServerThread(channel_log.config(tmp_path / "data"), own).start()
    try:
        with Client(srv.target, cache_dir=cache_dir) as client:
            client.publish("kb", TEXTS)
            index = client.codes("kb")                  # the server's code model, fetched and cached
            assert index.model_id == other.model_id and index.stages == 4 and len(index) == len(TEXTS)
            model = client.code_model(index.model_id)
            assert model.model_id == other.model_id and (cache_dir / other.model_id).is_dir()
            assert index.search(model.query(TEXTS[3]), k=1)[0].offset == 3
        with Client(srv.target, cache_dir=cache_dir) as client:   # from the cache this time
            assert client.code_model(other.model_id).stages == 4
            with pytest.raises(RvqstreamError) as err:               # codes of another model: refused
                client.codes("kb", index=shipped.index(4))
            assert err.value.code == "FAILED_PRECONDITION"
    finally:
        srv.close()


def test_an_aborted_message_is_coded_from_its_stored_text(tmp_path, registry, cache_dir, channel_log):
    import time

    text = "Preheat the oven to 200 degrees and bake the bread "
    srv = ServerThread(channel_log.config(tmp_path / "data", stream_timeout_s=0.3), registry).start()
    try:
        with Client(srv.target, cache_dir=cache_dir) as client:
            client.publish("kb", TEXTS[:1])
            w = client.open_stream("kb", max_delay_ms=20)
            w.write(text)
            w.flush()
            deadline = time.monotonic() + 10
            while w.offset is None and time.monotonic() < deadline:
                time.sleep(0.02)
        with Client(srv.target, cache_dir=cache_dir) as client:    # the producer is gone
            (msg,) = [m for _, m in zip(range(1), client.subscribe("kb", 1))]
            assert msg.aborted and msg.text == text
            index = client.codes("kb")
            assert list(index.offsets) == [0, 1] and index.next_offset == 2
            assert (index.codes[1] == shipped_code_model().codes([text])[0]).all()
            assert client.search("kb", "how long to bake bread", k=1)[0].offset == 1
    finally:
        srv.close()
