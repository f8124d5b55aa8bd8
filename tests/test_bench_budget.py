"""The scoreboard's rate-against-budget simulation (bench/budget.py) makes a stream that decodes
back to its text, an idle stream's first word goes out alone, and a tighter budget flushes more
often. Skipped without the ``bench`` extra."""

import sys
from pathlib import Path

import pytest

from rvqstream.models import Codec

pytest.importorskip("brotli", reason="bench extra not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from budget import CHUNK, rate_vs_budget, stream_batches

TEXTS = ["The quick brown fox jumps over the lazy dog,\n\tthen naps in the afternoon sun.",
         "Two spaces  and a tab\there; trailing space "]


@pytest.fixture(scope="module")
def codec():
    return Codec.load()


def test_chunks_keep_every_byte():
    for t in TEXTS:
        assert "".join(CHUNK.findall(t)) == t


@pytest.mark.parametrize("budget_s", [0.05, 0.4, float("inf")])
def test_stream_decodes_to_the_text(codec, budget_s):
    got = stream_batches(codec, TEXTS, rate=30.0, budget_s=budget_s)
    dec = codec.decoder()
    decoded = [dec.push(b.data) for b, _ in got]
    assert "".join(d.text for d in decoded) == "".join(TEXTS) == "".join(t for _, t in got)
    assert [d.text for d in decoded] == [t for _, t in got]
    assert sum(d.message_end for d in decoded) == len(TEXTS)
    assert got[0][1] == "The"                  # the idle stream's first word goes at once


def test_tighter_budget_flushes_more_often(codec):
    rows = rate_vs_budget(codec, TEXTS, [30.0], [50, 400, None])
    flushes = [r["flushes"] for r in rows]
    assert flushes[0] > flushes[1] > flushes[2] >= len(TEXTS)
    assert all(r["ratio_to_zstd_stream"] < 1 for r in rows)
