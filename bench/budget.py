"""Rate against latency budget: a stream fed at LLM speed on a simulated clock, flushed by the
server's rule, against zstd with the dictionary in one streaming context flushed at the same points.

Each message is cut into chunks of one word with its leading whitespace (the text is kept byte
for byte) and fed to ``codec.encoder()`` at ``rate`` tokens/s, with no compute time. Flushes
follow rvqstream.server.encode: the first text of an idle stream (no batch within the budget)
goes at once; later text waits until the oldest text held is the budget minus the margin (5 ms +
5% of the budget) old; a message end flushes. bpb counts the frame batches alone, and the bytes a
gRPC stream carries (each batch in one response: protobuf, 5-byte gRPC prefix, 9-byte HTTP/2
DATA frame header). The anchors carry the same text at the same flush points with the same
framing: raw, and zstd -19 with the bundle's dictionary in one streaming context (flush block).
bench/live.py measures the same on a real server and TCP connection.
"""

from __future__ import annotations

import math
import re

import zstandard
from grpc_bytes import HTTP2_FRAME_HEADER, grpc_message_bytes

from rvqstream._proto import codec_pb2
from rvqstream.models import Batch, Codec
from rvqstream.server.encode import SLACK_FRACTION, SLACK_S

CHUNK = re.compile(r"\s*\S+|\s+")


def stream_batches(codec: Codec, texts: list[str], rate: float, budget_s: float) -> list[tuple[Batch, str]]:
    """Batches of ``texts`` fed as one stream at ``rate`` tokens/s under a latency budget (s),
    each with the text it carries."""
    tok = codec.parts.tokenizer
    enc = codec.encoder()
    margin = SLACK_S + SLACK_FRACTION * budget_s
    out: list[tuple[Batch, str]] = []
    now, oldest, last_emit, held = 0.0, None, -math.inf, ""

    def emit(batch: Batch | None) -> None:
        nonlocal oldest, last_emit, held
        if batch is not None:
            out.append((batch, held))
            last_emit, held = now, ""
        oldest = None

    for text in texts:
        for chunk in CHUNK.findall(text):
            if oldest is not None and now >= oldest + budget_s - margin:
                emit(enc.flush())
            idle = oldest is None and now - last_emit >= budget_s
            enc.push(chunk)
            held += chunk
            oldest = now if oldest is None else oldest
            if idle:
                emit(enc.flush())
            now += max(1, len(tok.encode(chunk))) / rate
        emit(enc.end_message())
    return out


def rate_vs_budget(codec: Codec, texts: list[str], rates: list[float],
                   budgets_ms: list[float | None]) -> list[dict]:
    """One row per (rate, budget): flushes, text bytes per flush, bpb of the batches and of the gRPC
    stream, and the anchors at the same flush points. A budget of None never flushes early."""
    nbytes = sum(len(t.encode()) for t in texts)
    zdict = zstandard.ZstdCompressionDict(codec.parts.zdict)
    rows = []
    for rate in rates:
        for b in budgets_ms:
            got = stream_batches(codec, texts, rate, math.inf if b is None else b / 1000)
            cobj = zstandard.ZstdCompressor(level=19, dict_data=zdict).compressobj()
            wire = {"rvqstream": 0, "raw text": 0, "zstd-19+dict stream": 0}
            for batch, text in got:
                data = text.encode()
                z = cobj.compress(data) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                for name, payload in (("rvqstream", batch.data), ("raw text", data), ("zstd-19+dict stream", z)):
                    wire[name] += grpc_message_bytes(codec_pb2.EncodeStreamResponse(frames=payload)) \
                        + HTTP2_FRAME_HEADER
            rows.append({"rate_tokens_per_s": rate, "budget_ms": b, "flushes": len(got),
                         "text_bytes_per_flush": nbytes / len(got),
                         "bpb_batches": 8 * sum(len(bt.data) for bt, _ in got) / nbytes,
                         "bpb_grpc": 8 * wire["rvqstream"] / nbytes,
                         "anchors_bpb_grpc": {k: 8 * v / nbytes for k, v in wire.items() if k != "rvqstream"},
                         "ratio_to_zstd_stream": wire["rvqstream"] / wire["zstd-19+dict stream"]})
    return rows
