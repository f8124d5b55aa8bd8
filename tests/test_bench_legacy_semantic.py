"""The benchmarks' semantic-tier blobs (bench/legacy_semantic.py) are what the retired encoder
wrote: each committed version-3 blob of tests/data/semantic_v3.json comes out again byte for byte
from its text and stage count, and the committed streams are the float bundle's."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from legacy_semantic import fixtures, semantic_blob, streams

FIXTURES = fixtures()


@pytest.mark.parametrize("case", FIXTURES["blobs"], ids=lambda c: f"{c['stages']}-stages-{len(c['text'])}")
def test_semantic_blob_is_the_retired_encoders(float_codec, case):
    assert float_codec.model_id == FIXTURES["model_id"]
    assert semantic_blob(float_codec, case["text"], case["stages"]) == base64.b64decode(case["blob"])


def test_semantic_blob_refuses_stage_counts_out_of_range(float_codec):
    for stages in (0, float_codec.parts.stages + 1):
        with pytest.raises(ValueError, match="stages"):
            semantic_blob(float_codec, "hello", stages)


def test_streams_are_the_float_bundles(float_codec, int_codec):
    batches = streams(float_codec)
    assert [len(s) for s in batches] == [len(s["batches"]) for s in FIXTURES["streams"]]
    with pytest.raises(ValueError, match="model"):
        streams(int_codec)
