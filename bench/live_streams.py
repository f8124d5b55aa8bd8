"""What the live-stream benchmarks share: the texts, words with their token counts, and a
producer that writes a message at a steady token rate (bench/live.py runs them)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

from rvqstream.models import Codec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "scripts" / "demo_sample.txt"


def sample_texts(n: int, min_bytes: int = 400) -> list[str]:
    """``n`` held-out messages of at least ``min_bytes`` (data/test.jsonl, in a fixed order by
    hash), else paragraphs of the demo sample."""
    test = ROOT / "data" / "test.jsonl"
    if test.exists():
        rows = [json.loads(line)["text"] for line in test.read_text().splitlines()]
        rows = [t for t in rows if len(t.encode()) >= min_bytes]
        rows.sort(key=lambda t: hashlib.sha256(t.encode()).digest())
        return rows[:n]
    text = SAMPLE.read_text()
    return [text[i % len(text):] + text[:i % len(text)] for i in range(0, 97 * n, 97)]


def words_of(codec: Codec, text: str) -> list[tuple[str, int]]:
    """The text as chunks of one word with its leading whitespace, each with its token count."""
    out, start = [], 0
    pieces = text.split(" ")
    for i, p in enumerate(pieces):
        chunk = p if i == 0 else " " + p
        if chunk:
            out.append((chunk, max(1, len(codec.parts.tokenizer.encode(chunk)))))
        start += len(chunk)
    return out


async def write_message(writer, words: list[tuple[str, int]], rate: float, log: list | None = None) -> int:
    """Writes ``words`` at ``rate`` tokens/s -> the message's offset once it is durable. ``log``
    gets (moment of the write, characters of the message written so far)."""
    chars, next_t = 0, time.monotonic()
    for chunk, ntok in words:
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        await writer.write(chunk)
        chars += len(chunk)
        if log is not None:
            log.append((time.monotonic(), chars))
        next_t += ntok / rate
    return await writer.end_message()
