"""Determinism: exact-tier frame batches made under one ONNX Runtime setting, decoded under every other.

Batches are encoded once, message by message (``codec.encoder()``, default session settings:
1 thread, all graph optimizations; the message pushed a word at a time, flushed every
``FLUSH_WORDS`` words, as a live stream is), then decoded by a fresh model for each intra-op
thread count and graph-optimization level (several settings at once, in worker processes). A
mismatch is a message whose decoding raises a ``CodecError`` (a batch check caught it) or
returns different text (the checks missed it).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import onnxruntime as ort
from budget import CHUNK

from rvqstream.models import Codec, CodecError, SessionSettings

LEVELS = list(ort.GraphOptimizationLevel.__members__.values())
FLUSH_WORDS = 8


def encode_batches(codec: Codec, texts: list[str]) -> list[list]:
    """Each message's exact-tier frame batches."""
    out = []
    for t in texts:
        enc, batches = codec.encoder(), []
        for i, chunk in enumerate(CHUNK.findall(t), 1):
            enc.push(chunk)
            if i % FLUSH_WORDS == 0 and (b := enc.flush()) is not None:
                batches.append(b)
        out.append(batches + [enc.end_message()])
    return out


def decode_all(codec: Codec, texts: list[str], batches: list[list]) -> dict:
    """Decode every message; count check failures and silent differences."""
    failed = silent = 0
    for t, bs in zip(texts, batches):
        dec = codec.decoder()
        try:
            got = "".join(dec.push(b.data).text for b in bs)
        except CodecError:
            failed += 1
            continue
        silent += got != t
    return {"integrity_check_failures": failed, "silent_mismatches": silent}


def _decode_under(threads: int, level_name: str, texts: list[str], batches: list[list]) -> dict:
    level = ort.GraphOptimizationLevel.__members__[level_name]
    codec = Codec.load(settings=SessionSettings(threads=threads, optimization=level))
    return {"threads": threads, "optimization": level_name, **decode_all(codec, texts, batches)}


def determinism(texts: list[str], threads: list[int], workers: int) -> dict:
    """Decode under every (threads, optimization level), ``workers`` settings at a time in
    spawned processes; batches from the default settings."""
    batches = encode_batches(Codec.load(), texts)
    jobs = [(n, level.name) for n in threads for level in LEVELS]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(_decode_under, *zip(*jobs), [texts] * len(jobs), [batches] * len(jobs)))
    return {"messages": len(texts), "batches": sum(len(bs) for bs in batches),
            "frames": sum(b.frames for bs in batches for b in bs),
            "model_frames": sum(b.frames - b.fallback_frames for bs in batches for b in bs), "runs": runs}
