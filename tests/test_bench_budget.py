"""The scoreboard's rate-against-budget simulation (bench/budget.py) makes a stream that decodes
back to its text, and a tighter budget forces shorter frames. Skipped without the ``bench`` extra."""

import sys
from pathlib import Path

import pytest

from rvqstream.models import Codec

pytest.importorskip("brotli", reason="bench extra not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from budget import CHUNK, stream_frames

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
    frames = stream_frames(codec, TEXTS, rate=30.0, budget_s=budget_s)
    dec = codec.decoder()
    assert "".join(dec.push(f) for f in frames) == "".join(TEXTS)
    assert sum(f.message_end for f in frames) == len(TEXTS)


def test_tighter_budget_gives_shorter_frames(codec):
    def tokens_per_frame(budget_s):
        fr = [f for f in stream_frames(codec, TEXTS, rate=30.0, budget_s=budget_s) if f.n_tokens]
        return sum(f.n_tokens for f in fr) / len(fr)
    assert tokens_per_frame(0.05) < tokens_per_frame(float("inf"))
