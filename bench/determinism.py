"""Determinism: exact-tier frames made under one ONNX Runtime setting, decoded under every other.

Frames are encoded once, message by message (``codec.encoder()``, default session settings:
1 thread, all graph optimizations), then decoded by a fresh model for each intra-op thread count
and graph-optimization level. A mismatch is a message whose decoding raises ``IntegrityError``
(the frame check caught it) or returns different text (the check missed it).
"""

from __future__ import annotations

import onnxruntime as ort

from rvqstream.models import Codec, IntegrityError, SessionSettings

LEVELS = list(ort.GraphOptimizationLevel.__members__.values())


def encode_frames(codec: Codec, texts: list[str]) -> list[list]:
    """Each message's exact-tier frames."""
    out = []
    for t in texts:
        enc = codec.encoder()
        out.append(enc.push(t) + enc.end_message())
    return out


def decode_all(codec: Codec, texts: list[str], frames: list[list]) -> dict:
    """Decode every message; count check failures and silent differences."""
    failed = silent = 0
    for t, fr in zip(texts, frames):
        dec = codec.decoder()
        try:
            got = "".join(dec.push(f) for f in fr)
        except IntegrityError:
            failed += 1
            continue
        silent += got != t
    return {"integrity_check_failures": failed, "silent_mismatches": silent}


def determinism(texts: list[str], threads: list[int]) -> dict:
    """Decode under every (threads, optimization level); frames from the default settings."""
    frames = encode_frames(Codec.load(), texts)
    runs = []
    for n in threads:
        for level in LEVELS:
            codec = Codec.load(settings=SessionSettings(threads=n, optimization=level))
            runs.append({"threads": n, "optimization": level.name, **decode_all(codec, texts, frames)})
    return {"messages": len(texts), "frames": sum(len(f) for f in frames),
            "model_frames": sum(f.kind.name == "MODEL" for fr in frames for f in fr), "runs": runs}
