"""Semantic-tier data already written keeps decoding: blobs and streams of format version 3, made
by the float bundle (tests/data/semantic_v3.json), decode to the text they decoded to when made.
The tier keeps little of a message's meaning (bench/semantic_codes.py, "text tier"): these are
what any retirement of it must still read."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rvqstream.models.blob import Mode, parse_header_version

FIXTURES = json.loads((Path(__file__).parent / "data" / "semantic_v3.json").read_text())


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
