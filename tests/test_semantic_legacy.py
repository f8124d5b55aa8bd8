"""Semantic-tier data already written keeps decoding: blobs and streams of format version 3, made
by the float bundle (tests/data/semantic_v3.json), decode to the text they decoded to when made.
The tier kept little of a message's meaning (bench/semantic_codes.py, "text tier") and is retired:
nothing writes it, and this is what the retirement must still read."""

from __future__ import annotations

import asyncio
import base64
import itertools

import pytest
from conftest import LEGACY_SEMANTIC as FIXTURES
from conftest import ServerThread

from rvqstream._proto import frame_pb2
from rvqstream.client import Client
from rvqstream.models.blob import Mode, parse_header_version
from rvqstream.server import ServerConfig
from rvqstream.server.app import LOG_FILE
from rvqstream.server.logstore import Part, Record, StreamKey
from rvqstream.server.sqlite_store import SQLiteLogStore


@pytest.mark.parametrize("case", FIXTURES["blobs"], ids=lambda c: f"{c['stages']}-stages-{len(c['text'])}")
def test_old_semantic_blobs_decode(float_codec, case):
    assert float_codec.model_id == FIXTURES["model_id"]
    blob = base64.b64decode(case["blob"])
    mode, _, version = parse_header_version(blob)
    assert (mode, version) == (Mode.SEMANTIC, 3)
    assert float_codec.decompress(blob) == case["decoded"]
    assert float_codec.decompress_many([blob]) == [case["decoded"]]


@pytest.mark.parametrize("case", FIXTURES["streams"], ids=lambda c: f"{c['stages']}-stages")
def test_old_semantic_streams_decode(float_codec, case):
    decoder = float_codec.decoder("semantic")
    text = "".join(decoder.push(base64.b64decode(b)).text for b in case["batches"])
    assert text == case["decoded"] and len(case["batches"]) > 1


def test_a_log_written_before_the_retirement_still_serves_its_semantic_messages(tmp_path, registry, float_codec):
    """A channel log holding a published semantic blob and a streamed semantic-tier message (as
    servers wrote them before the tier was retired): a subscriber receives both and decodes them
    to the text they decoded to when written."""
    blob = base64.b64decode(FIXTURES["blobs"][0]["blob"])
    stream = FIXTURES["streams"][1]
    batches = [base64.b64decode(b) for b in stream["batches"]]

    async def write_old_log() -> None:
        store = SQLiteLogStore(tmp_path / LOG_FILE)
        try:
            await store.append("old", [Record(blob, float_codec.model_id)])
            key = StreamKey("producer", 1, float_codec.model_id, frame_pb2.TIER_SEMANTIC)
            decoder = float_codec.decoder("semantic")
            for i, batch in enumerate(batches):
                text = decoder.push(batch).text
                await store.append_part("old", key, Part(i, batch, len(text.encode()), 0, i == len(batches) - 1))
        finally:
            await store.close()

    asyncio.run(write_old_log())
    server = ServerThread(ServerConfig(data_dir=tmp_path), registry).start()
    try:
        with Client(server.target, cache_dir=tmp_path / "cache") as client:
            first, second = itertools.islice(client.subscribe("old"), 2)
    finally:
        server.close()
    assert first.text == FIXTURES["blobs"][0]["decoded"]
    assert second.text == stream["decoded"] and not second.aborted
