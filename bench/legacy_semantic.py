"""Semantic-tier data as the retired encoder made it, for the benchmarks and fuzzers that still need
some: the codec reads the frame-level semantic text tier (blobs of format version 2 and 3, stream
batches) and no longer writes it.

- ``semantic_blob``: a version-3 SEMANTIC blob, byte for byte what ``Codec.compress(text,
  tier="semantic", stages=n)`` returned before the tier was retired (bench/semantic_codes.py's
  ``text_tier``, which measured what the tier keeps, and the fuzzers' seeds of that form);
- ``streams``: the semantic-tier stream batches committed in ``FIXTURES``, written by the retired
  stream encoder (the fuzzers' seeds of that kind).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from rvqstream.models import Codec
from rvqstream.models.blob import LAST_SEMANTIC_VERSION, MAGIC, Mode, model_tag
from rvqstream.models.entropy import ArithmeticEncoder

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "semantic_v3.json"   # the float bundle's semantic-tier blobs, streams
BATCH_FRAMES = 64   # frames per frame-encoder run, as the retired encoder ran them (bounds its memory)


def semantic_blob(codec: Codec, text: str, stages: int) -> bytes:
    """A version-3 SEMANTIC blob of ``text`` with ``stages`` RVQ codes a frame (1..the model's
    stages; ``ValueError`` otherwise): the 2-byte header, then arithmetic-coded the stage count, per
    frame its token count (1..F) and its codes, and a token count of 0."""
    p = codec.parts
    if not 1 <= stages <= p.stages:
        raise ValueError(f"semantic tier needs 1..{p.stages} stages, got {stages}")
    tokens = p.tokenizer.encode(text)
    enc = ArithmeticEncoder()
    enc.encode_uniform(stages - 1, p.stages)
    step = BATCH_FRAMES * p.frame
    for start in range(0, len(tokens), step):
        frames = [tokens[i:i + p.frame] for i in range(start, min(start + step, len(tokens)), p.frame)]
        for frame, codes in zip(frames, p.frame_encoder.codes(frames, stages)):
            enc.encode_uniform(len(frame), p.frame + 1)
            for c in codes:
                enc.encode_uniform(int(c), p.codes)
    enc.encode_uniform(0, p.frame + 1)
    head = bytes([MAGIC | (LAST_SEMANTIC_VERSION << 2) | Mode.SEMANTIC, model_tag(codec.model_id)])
    return head + enc.finish()


def fixtures() -> dict:
    """The committed semantic-tier data (``FIXTURES``): ``model_id``, ``blobs`` ({text, stages,
    blob (base64), decoded}) and ``streams`` ({text, stages, batches (base64), decoded})."""
    return json.loads(FIXTURES.read_text())


def streams(codec: Codec) -> list[list[bytes]]:
    """The committed semantic-tier streams' batches, each list one stream in order; ``ValueError``
    unless ``codec`` is the model that wrote them."""
    data = fixtures()
    if codec.model_id != data["model_id"]:
        raise ValueError(f"the semantic streams of {FIXTURES.name} are model {data['model_id'][:12]}'s, "
                         f"not {codec.model_id[:12]}'s")
    return [[base64.b64decode(b) for b in s["batches"]] for s in data["streams"]]
