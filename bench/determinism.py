"""Determinism: exact-tier frames made under one ONNX Runtime setting, decoded under every other.

Frames are encoded once, message by message (``codec.encoder()``, default session settings:
1 thread, all graph optimizations), then decoded by a fresh model for each intra-op thread count
and graph-optimization level (several settings at once, in worker processes). A mismatch is a
message whose decoding raises ``IntegrityError`` (the frame check caught it) or returns different
text (the check missed it).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

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


def _decode_under(threads: int, level_name: str, texts: list[str], frames: list[list]) -> dict:
    level = ort.GraphOptimizationLevel.__members__[level_name]
    codec = Codec.load(settings=SessionSettings(threads=threads, optimization=level))
    return {"threads": threads, "optimization": level_name, **decode_all(codec, texts, frames)}


def determinism(texts: list[str], threads: list[int], workers: int) -> dict:
    """Decode under every (threads, optimization level), ``workers`` settings at a time in
    spawned processes; frames from the default settings."""
    frames = encode_frames(Codec.load(), texts)
    jobs = [(n, level.name) for n in threads for level in LEVELS]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(_decode_under, *zip(*jobs), [texts] * len(jobs), [frames] * len(jobs)))
    return {"messages": len(texts), "frames": sum(len(f) for f in frames),
            "model_frames": sum(f.kind.name == "MODEL" for fr in frames for f in fr), "runs": runs}
