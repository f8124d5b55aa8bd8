"""Rate: exact-tier bits per byte against the lexical anchors, and the bytes a gRPC stream carries.

bpb = 8 x output bytes / UTF-8 bytes of the text, summed over a set of messages. rvqstream counts
the whole blob (header and checks included); the anchors are from ``codec_bench.anchors`` plus
zstd -19 without a dictionary.

Wire bytes per message: each gRPC message on a stream costs its protobuf encoding, a 5-byte gRPC
length prefix and a 9-byte HTTP/2 DATA frame header (one DATA frame per message, as a stream
written message by message sends it). Counted for the message as rvqstream stream frames
(``EncodeStreamResponse`` per frame), as one rvqstream blob, and as one frame carrying the text
raw or zstd-compressed (with the same trained dictionary).
"""

from __future__ import annotations

import statistics
from collections import Counter

import zstandard
from codec_bench import anchors

from rvqstream._proto import codec_pb2
from rvqstream.models import Codec, Frame, FrameKind
from rvqstream.wire import frame_to_pb

GRPC_PREFIX_BYTES = 5     # compressed flag + 4-byte length
HTTP2_FRAME_BYTES = 9     # DATA frame header


def anchor_sizes(texts: list[str], zdict: zstandard.ZstdCompressionDict) -> dict[str, list[int]]:
    """Bytes per message for each anchor."""
    plain = zstandard.ZstdCompressor(level=19)
    return {**anchors(texts, zdict), "zstd-19": [len(plain.compress(t.encode())) for t in texts]}


def anchor_bpb(texts: list[str], zdict: zstandard.ZstdCompressionDict) -> dict[str, float]:
    nbytes = sum(len(t.encode()) for t in texts)
    return {k: 8 * sum(v) / nbytes for k, v in anchor_sizes(texts, zdict).items()}


def exact_rates(codec: Codec, texts: list[str], blobs: list[bytes], zdict: zstandard.ZstdCompressionDict) -> dict:
    """Exact-tier ``blobs`` of ``texts`` and the anchors: total and median per-message bpb, blob
    modes, and the largest excess over zstd+dict (bytes). Raises if a blob does not round-trip."""
    for t, b in zip(texts, blobs):
        if codec.decompress(b) != t:
            raise AssertionError("exact tier did not round-trip")
    sizes = {"rvqstream exact": [len(b) for b in blobs], **anchor_sizes(texts, zdict)}
    nbytes = [len(t.encode()) for t in texts]
    excess = [o - z for o, z in zip(sizes["rvqstream exact"], sizes["zstd-19+dict"])]
    return {
        "messages": len(texts), "bytes": sum(nbytes),
        "bpb": {k: 8 * sum(v) / sum(nbytes) for k, v in sizes.items()},
        "median_message_bpb": {k: statistics.median(8 * x / n for x, n in zip(v, nbytes))
                               for k, v in sizes.items()},
        "max_bytes_above_zstd_dict": max(excess),
        "blob_modes": dict(Counter(Codec.blob_mode(b).name for b in blobs)),
    }


def grpc_message_bytes(msg) -> int:
    """Bytes on the wire for one protobuf message on a gRPC stream."""
    return msg.ByteSize() + GRPC_PREFIX_BYTES + HTTP2_FRAME_BYTES


def wire_bytes(codec: Codec, texts: list[str], blobs: list[bytes], zdict: zstandard.ZstdCompressionDict) -> dict:
    """Mean bytes per message on a gRPC stream, and bpb, for each way of sending ``texts``
    (``blobs``: their exact-tier blobs)."""
    cz = zstandard.ZstdCompressor(level=19, dict_data=zdict)
    totals = Counter()
    frames = 0
    for t, blob in zip(texts, blobs):
        enc = codec.encoder()
        fr = enc.push(t) + enc.end_message()
        frames += len(fr)
        totals["rvqstream frames"] += sum(
            grpc_message_bytes(codec_pb2.EncodeStreamResponse(frame=frame_to_pb(f))) for f in fr)
        totals["rvqstream frame payloads only"] += sum(len(f.payload) for f in fr)
        totals["rvqstream blob"] += grpc_message_bytes(codec_pb2.CompressResponse(blob=blob))
        for name, kind, payload in (("raw text", FrameKind.RAW, t.encode()),
                                    ("zstd-19+dict text", FrameKind.ZSTD, cz.compress(t.encode()))):
            pb = frame_to_pb(Frame(0, kind, 0, 0, payload, message_start=True, message_end=True))
            totals[name] += grpc_message_bytes(codec_pb2.EncodeStreamResponse(frame=pb))
    nbytes = sum(len(t.encode()) for t in texts)
    return {"messages": len(texts), "bytes": nbytes, "rvqstream_frames_per_message": frames / len(texts),
            "bytes_per_message": {k: v / len(texts) for k, v in totals.items()},
            "bpb": {k: 8 * v / nbytes for k, v in totals.items()}}



def combine(rows: list[dict]) -> dict:
    """Rows of ``exact_rates`` or ``wire_bytes`` for disjoint message sets -> their union's bpb
    and message count (bytes-weighted; medians and per-message means are not combined)."""
    nbytes = sum(r["bytes"] for r in rows)
    return {"messages": sum(r["messages"] for r in rows), "bytes": nbytes,
            "bpb": {k: sum(r["bpb"][k] * r["bytes"] for r in rows) / nbytes for k in rows[0]["bpb"]}}
