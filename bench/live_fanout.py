"""Latency of live streams with fan-out (see bench/live.py).

Producers in the calling process write words at ``rate`` tokens/s (SDK stream writers, budget
``budget_ms``); subscribers in ``workers`` child processes (this file run with
``--subscriber-worker``) follow with the SDK (``follow``: decoded locally, as an edge device
does; the subscribers of one process share its connection). A word's latency = the moment a
subscriber's decoded text first covers its last character minus the moment the producer wrote it
(both CLOCK_MONOTONIC, one machine). Every subscriber's text is compared with what was written.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from live_streams import sample_texts, words_of, write_message
from load import Server

from rvqstream.client import AsyncClient
from rvqstream.models import Codec


async def _subscribers(target: str, channels: list[str], last: int, cache_dir: str) -> list:
    """Follows every channel of ``channels`` until message ``last`` ends -> per follower its
    (moment, offset, characters decoded of that message so far) after each delta, and its text."""
    async with AsyncClient(target, cache_dir=cache_dir, reconnect_timeout_s=60) as client:
        await client.model("")
        print("ready", flush=True)

        async def one(channel: str):
            log, texts = [], {}
            async for d in client.follow(channel, 1):
                texts[d.offset] = texts.get(d.offset, "") + d.text
                log.append((time.monotonic(), d.offset, len(texts[d.offset])))
                if d.offset == last and d.done:
                    return log, texts

        return await asyncio.gather(*(one(c) for c in channels))


def subscriber_worker(args: list[str]) -> None:
    target, last, cache_dir, out, *channels = args
    results = asyncio.run(_subscribers(target, channels, int(last), cache_dir))
    Path(out).write_text(json.dumps([{"channel": c, "log": log, "texts": texts}
                                     for c, (log, texts) in zip(channels, results)]))


def _latencies(writes: dict[int, list], log: list) -> list[float]:
    """ms from each write to the first decode that covers it."""
    out = []
    by_msg: dict[int, list] = {}
    for t, offset, chars in log:
        by_msg.setdefault(offset, []).append((chars, t))
    for offset, wlog in writes.items():
        seen = by_msg.get(offset, [])
        i = 0
        for t_w, c_w in wlog:
            while i < len(seen) and seen[i][0] < c_w:
                i += 1
            if i < len(seen):
                out.append((seen[i][1] - t_w) * 1000)
    return out


async def fanout(codec: Codec, producers: int, subscribers_each: int, rate: float, budget_ms: int,
                 seconds: float, workers: int) -> dict:
    """``producers`` channels, each streamed by one producer and followed by ``subscribers_each``."""
    texts = sample_texts(4 * producers)
    server = Server(budget_ms, workers=2)
    tmp = tempfile.TemporaryDirectory(prefix="rvqstream-live-")
    procs = []
    try:
        await server.ready()
        async with AsyncClient(server.target, cache_dir=tmp.name + "/cache") as client:
            await client.model("")
            channels = [f"fan-{p}" for p in range(producers)]
            for c in channels:
                await client.publish(c, ["channel opened"])
            followers = [c for c in channels for _ in range(subscribers_each)]
            n_workers = max(1, min(workers, len(followers)))
            outs = [f"{tmp.name}/sub-{k}.json" for k in range(n_workers)]
            for k in range(n_workers):
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--subscriber-worker", server.target, "2", tmp.name + "/cache",
                    outs[k], *followers[k::n_workers], stdout=subprocess.PIPE))
            for p in procs:
                assert (await p.stdout.readline()).strip() == b"ready"
            await asyncio.sleep(1.0)
            writes: dict[str, dict[int, list]] = {c: {} for c in channels}
            sent: dict[str, str] = {}

            async def produce(p: int) -> None:
                c = channels[p]
                await asyncio.sleep(p / producers)          # starts spread over a second
                words = []
                for text in texts[p::producers]:
                    words += words_of(codec, text)
                    if sum(n for _, n in words) >= rate * seconds:
                        break
                async with client.open_stream(c, max_delay_ms=budget_ms) as w:
                    log: list = []
                    await write_message(w, words, rate, log)
                    writes[c][1] = log
                    sent[c] = "".join(x for x, _ in words)
                    await write_message(w, words_of(codec, "done."), rate)

            t0 = time.monotonic()
            await asyncio.gather(*(produce(p) for p in range(producers)))
            wall = time.monotonic() - t0
        for p in procs:
            await asyncio.wait_for(p.wait(), 300)
        results = [r for o in outs for r in json.loads(Path(o).read_text())]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
        server.stop()
        tmp.cleanup()
    lat, exact = [], 0
    for r in results:
        lat += _latencies({int(k): v for k, v in writes[r["channel"]].items()}, r["log"])
        exact += r["texts"].get("1") == sent[r["channel"]]
    lat.sort()
    q = (lambda x: lat[min(len(lat) - 1, int(x * len(lat)))]) if lat else (lambda x: float("nan"))
    row = {"producers": producers, "subscribers_per_producer": subscribers_each, "rate_tokens_per_s": rate,
           "budget_ms": budget_ms, "seconds": wall, "subscriber_processes": len(outs),
           "words_measured": len(lat),
           "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": lat[-1] if lat else float("nan"),
                          "mean": statistics.fmean(lat) if lat else float("nan")},
           "p99_within_budget_plus_30ms": bool(lat) and q(0.99) <= budget_ms + 30,
           "subscribers": len(results), "subscribers_byte_exact": exact}
    print(f"  {producers:3d} producer(s) -> {subscribers_each:3d} subscriber(s) each: p50 "
          f"{row['latency_ms']['p50']:.0f} ms, p99 {row['latency_ms']['p99']:.0f} ms, max "
          f"{row['latency_ms']['max']:.0f} ms; {exact}/{len(results)} byte-exact", flush=True)
    return row


if __name__ == "__main__" and sys.argv[1:2] == ["--subscriber-worker"]:
    subscriber_worker(sys.argv[2:])
