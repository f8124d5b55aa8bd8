"""Rate: exact-tier bits per byte against the lexical anchors.

bpb = 8 x output bytes / UTF-8 bytes of the text, summed over a set of messages. rvqstream counts
the whole blob (header and checks included); the anchors are from ``codec_bench.anchors`` plus
zstd -19 without a dictionary. ``rvqstream exact`` is the default bundle (the integer model); a
caller can add other models' exact-tier blobs of the same texts as baselines (the float model's:
``codec_bench.FLOAT_EXACT``).
"""

from __future__ import annotations

import statistics
from collections import Counter

import zstandard
from codec_bench import OURS, anchors

from rvqstream.models import Codec


def anchor_sizes(texts: list[str], zdict: zstandard.ZstdCompressionDict) -> dict[str, list[int]]:
    """Bytes per message for each anchor."""
    plain = zstandard.ZstdCompressor(level=19)
    return {**anchors(texts, zdict), "zstd-19": [len(plain.compress(t.encode())) for t in texts]}


def anchor_bpb(texts: list[str], zdict: zstandard.ZstdCompressionDict) -> dict[str, float]:
    nbytes = sum(len(t.encode()) for t in texts)
    return {k: 8 * sum(v) / nbytes for k, v in anchor_sizes(texts, zdict).items()}


def exact_rates(codec: Codec, texts: list[str], blobs: list[bytes], zdict: zstandard.ZstdCompressionDict,
                baselines: dict[str, tuple[Codec, list[bytes]]] | None = None) -> dict:
    """Exact-tier ``blobs`` of ``texts`` and the anchors: total and median per-message bpb, blob
    modes, and the largest excess over zstd+dict (bytes). ``baselines``: {name: (another model, its
    exact-tier blobs of ``texts``)}, rated beside them under ``name``. Raises if a blob does not
    round-trip."""
    models = {OURS: (codec, blobs), **(baselines or {})}
    for name, (c, bl) in models.items():
        for t, b in zip(texts, bl, strict=True):
            if c.decompress(b) != t:
                raise AssertionError(f"{name}: exact tier did not round-trip")
    sizes = {**{name: [len(b) for b in bl] for name, (_, bl) in models.items()}, **anchor_sizes(texts, zdict)}
    nbytes = [len(t.encode()) for t in texts]
    excess = [o - z for o, z in zip(sizes[OURS], sizes["zstd-19+dict"])]
    return {
        "messages": len(texts), "bytes": sum(nbytes),
        "bpb": {k: 8 * sum(v) / sum(nbytes) for k, v in sizes.items()},
        "median_message_bpb": {k: statistics.median(8 * x / n for x, n in zip(v, nbytes))
                               for k, v in sizes.items()},
        "max_bytes_above_zstd_dict": max(excess),
        "blob_modes": dict(Counter(Codec.blob_mode(b).name for b in blobs)),
    }


def combine(rows: list[dict]) -> dict:
    """Rows of ``exact_rates`` or ``grpc_bytes.wire_bytes`` for disjoint message sets -> their union's bpb
    and message count (bytes-weighted; medians and per-message means are not combined)."""
    nbytes = sum(r["bytes"] for r in rows)
    return {"messages": sum(r["messages"] for r in rows), "bytes": nbytes,
            "bpb": {k: sum(r["bpb"][k] * r["bytes"] for r in rows) / nbytes for k in rows[0]["bpb"]}}
