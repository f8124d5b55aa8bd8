"""Rate against latency budget: exact-tier bpb of a stream fed at LLM speed, on a simulated clock.

Each message is cut into chunks of one word with its leading whitespace (the text is kept byte
for byte) and fed to ``codec.encoder()`` at ``rate`` tokens/s. The encoder is flushed the way the
server flushes (rvqstream.server.encode): once the oldest text it holds is ``budget`` minus the
margin (5 ms + 5% of the budget) old, with no compute time. bpb counts every frame's bytes
(``Frame.to_bytes``) and, separately, the bytes on a gRPC stream (``rate.grpc_message_bytes``).
"""

from __future__ import annotations

import math
import re

from grpc_bytes import grpc_message_bytes

from rvqstream._proto import codec_pb2
from rvqstream.models import Codec
from rvqstream.server.encode import SLACK_FRACTION, SLACK_S
from rvqstream.wire import frame_to_pb

CHUNK = re.compile(r"\s*\S+|\s+")


def stream_frames(codec: Codec, texts: list[str], rate: float, budget_s: float) -> list:
    """Frames of ``texts`` fed as one stream at ``rate`` tokens/s under a latency budget (s)."""
    tok = codec.parts.tokenizer
    enc = codec.encoder()
    margin = SLACK_S + SLACK_FRACTION * budget_s
    frames, now, oldest = [], 0.0, None
    for text in texts:
        for chunk in CHUNK.findall(text):
            if oldest is not None and now >= oldest + budget_s - margin:
                frames += enc.flush()
                oldest = None
            frames += enc.push(chunk)
            oldest = None if enc.pending_text == 0 else (now if oldest is None else oldest)
            now += max(1, len(tok.encode(chunk))) / rate
        frames += enc.end_message()
        oldest = None
    return frames


def rate_vs_budget(codec: Codec, texts: list[str], rates: list[float],
                   budgets_ms: list[float | None]) -> list[dict]:
    """One row per (rate, budget): frames, mean tokens per frame, codec and gRPC-wire bpb.
    A budget of None never flushes early (frames are full or end a message)."""
    nbytes = sum(len(t.encode()) for t in texts)
    rows = []
    for rate in rates:
        for b in budgets_ms:
            fr = stream_frames(codec, texts, rate, math.inf if b is None else b / 1000)
            content = [f for f in fr if f.n_tokens]
            wire = sum(grpc_message_bytes(codec_pb2.EncodeStreamResponse(frame=frame_to_pb(f))) for f in fr)
            rows.append({"rate_tokens_per_s": rate, "budget_ms": b, "frames": len(fr),
                         "tokens_per_frame": sum(f.n_tokens for f in content) / max(1, len(content)),
                         "bpb_frames": 8 * sum(len(f.to_bytes()) for f in fr) / nbytes,
                         "bpb_grpc": 8 * wire / nbytes})
    return rows
