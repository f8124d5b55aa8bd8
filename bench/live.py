"""Live code streams on channels: wire cost against the latency budget, and latency with fan-out.

Wire (``wire_curve``): for each budget, ``producers`` SDK stream writers each stream messages into
their own channel of a real ``rvqstream serve`` at ``rate`` tokens/s, word by word; each channel
is followed live by one subscriber through a counting TCP proxy on loopback. Counted: every byte
from the server to that subscriber on its TCP connection from before the first message to after
the last (HTTP/2 frame headers, gRPC prefixes, protobuf fields, message announcements, pings: all
of it). The subscriber's frame batches, decoded afterwards, give the flush points. The anchors
carry the same text cut at the same points, one gRPC message per flush, through the pass-through
server (bench/passthrough.py: the same grpc.aio setup, each chunk echoed as ``frames``) and the
same kind of proxy: raw UTF-8, and zstd -19 with the bundle's dictionary in one streaming context
per stream flushed at each point (a subscriber of the pass-through server receives them one per
response, in the field a live batch travels in). Framing per flush = rvqstream's wire bytes minus its coded
batch bytes, over its flushes.

Latency (``fanout``): producers in this process write words at ``rate`` tokens/s (SDK stream
writers, budget ``budget_ms``); subscribers in ``worker`` child processes follow with the SDK
(``Client.follow``: decoded locally, as an edge device does; the subscribers of one process
share its connection). A word's latency = the moment a subscriber's decoded text first covers
its last character minus the moment the producer wrote it (both CLOCK_MONOTONIC, one machine).
Every subscriber's text is compared with what was written.

Run: ``python bench/live.py [--quick] [--out bench/results/live.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import zstandard
from grpc_bytes import CountingProxy
from load import Server

from rvqstream._proto import channel_pb2, channel_pb2_grpc
from rvqstream.client import AsyncClient
from rvqstream.client.calls import CHANNEL_OPTIONS
from rvqstream.models import Codec
from rvqstream.wire import tier_from_pb

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "scripts" / "demo_sample.txt"
GRPC_AND_HTTP2_FRAMING = 5 + 9     # gRPC length prefix + HTTP/2 DATA frame header


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


# -- wire ---------------------------------------------------------------------------------------


async def _follow_raw(port: int, channel: str, until_offset: int, out: list, started: asyncio.Event) -> None:
    """A subscriber with the SDK's channel settings from offset 0 (the channel's opening marker:
    stream setup, not counted; ``started`` is set once it arrived) that keeps every later response
    (to decode afterwards) until message ``until_offset`` has ended."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as ch:
        call = channel_pb2_grpc.ChannelServiceStub(ch).Subscribe(
            channel_pb2.SubscribeRequest(channel=channel, from_offset=0))
        async for resp in call:
            out.append(resp)
            if not started.is_set():
                started.set()
                continue
            if resp.HasField("message") and resp.message.offset > until_offset:
                return


def flush_points(codec: Codec, responses: list) -> dict[int, list[tuple[bytes, str]]]:
    """Per streamed message: its batches with the text each one decoded to (the subscription's
    offset rule as in docs/formats.md §6.3)."""
    out: dict[int, list[tuple[bytes, str]]] = {}
    decoders, about, ended, tier = {}, None, False, 0
    for resp in responses:
        if resp.HasField("message"):
            m = resp.message
            about, ended = m.offset, m.state != channel_pb2.MESSAGE_STATE_STREAMING
            if m.streamed or m.state == channel_pb2.MESSAGE_STATE_STREAMING:
                tier = m.tier
            batches = list(m.frame_batches)
        else:
            about = (about + 1 if ended else about) + resp.offset_delta
            batches = [resp.frames]
        if batches and about not in decoders:
            decoders[about] = codec.decoder(tier_from_pb(tier))
            out[about] = []
        for b in batches:
            decoded = decoders[about].push(b)
            out[about].append((b, decoded.text))
            ended = decoded.message_end
        if resp.HasField("message"):
            ended = resp.message.state != channel_pb2.MESSAGE_STATE_STREAMING
    return out


async def _anchor_count(port: int, name: str, segments: list[bytes]) -> int:
    """Bytes from the pass-through server to a subscriber of its own connection (SDK channel
    settings) carrying ``segments`` one per response, as a live rvqstream subscriber carries
    batches: counted from after the subscription's first response to the last segment."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = channel_pb2_grpc.ChannelServiceStub(ch)
        requests = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel=name))]
        requests += [channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=seg))
                     for seg in [b"channel opened", *segments]]
        async for _ in stub.Publish(iter(requests)):
            pass
    proxy = CountingProxy(port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{await proxy.start()}", options=CHANNEL_OPTIONS) as ch:
        call = channel_pb2_grpc.ChannelServiceStub(ch).Subscribe(channel_pb2.SubscribeRequest(channel=name))
        await call.read()
        await asyncio.sleep(0.1)
        start = proxy.down
        for _ in segments:
            await call.read()
        used = proxy.down - start
        call.cancel()
    await proxy.stop()
    return used


async def wire_point(codec: Codec, texts: list[list[str]], rate: float, budget_ms: int) -> dict:
    """One budget: ``texts[p]`` are producer p's messages."""
    server = Server(budget_ms, workers=2)
    counts, responses = [], [[] for _ in texts]
    try:
        await server.ready()
        async with AsyncClient(server.target, cache_dir=server.tmp.name + "/cache") as client:
            await client.model("")
            for p in range(len(texts)):
                await client.publish(f"wire-{p}", ["channel opened"])
            proxies = [CountingProxy(server.port) for _ in texts]
            ports = [await px.start() for px in proxies]
            started = [asyncio.Event() for _ in texts]
            followers = [asyncio.create_task(_follow_raw(port, f"wire-{p}", len(texts[p]), responses[p], started[p]))
                         for p, port in enumerate(ports)]
            for e in started:
                await asyncio.wait_for(e.wait(), 30)
            await asyncio.sleep(0.2)
            starts = [px.down for px in proxies]
            types_at_start = sum((px.by_type for px in proxies), Counter())

            async def produce(p: int) -> None:
                async with client.open_stream(f"wire-{p}", max_delay_ms=budget_ms) as w:
                    for text in texts[p]:
                        await write_message(w, words_of(codec, text), rate)
                await client.publish(f"wire-{p}", ["channel closed"])

            await asyncio.gather(*(produce(p) for p in range(len(texts))))
            await asyncio.wait_for(asyncio.gather(*followers), 60)
            counts = [px.down - s for px, s in zip(proxies, starts)]
            by_type = sum((px.by_type for px in proxies), Counter()) - types_at_start
            for px in proxies:
                await px.stop()
    finally:
        server.stop()
    zdict = zstandard.ZstdCompressionDict(codec.parts.zdict)
    raw_segs, zstd_segs, flushes, batch_bytes, nbytes, exact = [], [], 0, 0, 0, True
    for p, resp in enumerate(responses):
        points = flush_points(codec, resp)
        cobj = zstandard.ZstdCompressor(level=19, dict_data=zdict).compressobj()
        raw, z = [], []
        for k, text in enumerate(texts[p]):
            got = points.get(k + 1, [])
            exact &= "".join(t for _, t in got) == text
            for batch, seg in got:
                flushes += 1
                batch_bytes += len(batch)
                raw.append(seg.encode())
                z.append(cobj.compress(seg.encode()) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            nbytes += len(text.encode())
        raw_segs.append([s for s in raw if s])
        zstd_segs.append(z)
    passthrough = Server(budget_ms, workers=1, passthrough=True)
    try:
        await passthrough.ready()
        raw_wire = sum([await _anchor_count(passthrough.port, f"raw-{p}", s) for p, s in enumerate(raw_segs)])
        zstd_wire = sum([await _anchor_count(passthrough.port, f"zstd-{p}", s) for p, s in enumerate(zstd_segs)])
    finally:
        passthrough.stop()
    # each count ends with the channel's closing marker (a published message): not part of the stream
    rvq_wire = sum(counts) - sum(r[-1].ByteSize() + GRPC_AND_HTTP2_FRAMING for r in responses)
    messages = sum(len(t) for t in texts)
    row = {"budget_ms": budget_ms, "producers": len(texts), "messages": messages, "text_bytes": nbytes,
           "flushes": flushes, "text_bytes_per_flush": nbytes / flushes, "decoded_exact": exact,
           "coded_batch_bytes": batch_bytes,
           "wire_bytes": {"rvqstream": rvq_wire, "raw text": raw_wire, "zstd-19+dict stream": zstd_wire},
           "wire_bytes_per_message": {"rvqstream": rvq_wire / messages, "raw text": raw_wire / messages,
                                      "zstd-19+dict stream": zstd_wire / messages},
           "bpb": {"rvqstream": 8 * rvq_wire / nbytes, "raw text": 8 * raw_wire / nbytes,
                   "zstd-19+dict stream": 8 * zstd_wire / nbytes, "rvqstream batches only": 8 * batch_bytes / nbytes},
           "ratio_to_zstd_stream": rvq_wire / zstd_wire,
           "framing_bytes_per_flush": (rvq_wire - batch_bytes) / flushes,
           "rvqstream_http2_bytes_by_frame_type": dict(by_type),
           "anchor_framing_bytes_per_flush": (zstd_wire - sum(len(s) for z in zstd_segs for s in z))
           / sum(len(z) for z in zstd_segs)}
    print(f"  budget {budget_ms:5d} ms: {flushes} flushes ({row['text_bytes_per_flush']:.0f} B of text each), "
          f"rvqstream {row['bpb']['rvqstream']:.2f} bpb, zstd stream {row['bpb']['zstd-19+dict stream']:.2f}, "
          f"raw {row['bpb']['raw text']:.2f}; ratio {row['ratio_to_zstd_stream']:.3f}; framing "
          f"{row['framing_bytes_per_flush']:.1f} B/flush; exact {exact}", flush=True)
    return row


async def wire_curve(codec: Codec, budgets_ms: list[int], producers: int, per_producer: int,
                     rate: float) -> list[dict]:
    texts = sample_texts(producers * per_producer)
    split = [texts[p::producers] for p in range(producers)]
    return [await wire_point(codec, split, rate, b) for b in budgets_ms]


# -- latency with fan-out -----------------------------------------------------------------------


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


FULL = {"budgets_ms": [50, 200, 1000, 5000], "wire_producers": 8, "wire_per_producer": 3,
        "fanout": [(1, 1), (1, 10), (1, 100), (100, 1)], "seconds": 15.0}
QUICK = {"budgets_ms": [50, 200, 1000], "wire_producers": 3, "wire_per_producer": 1,
         "fanout": [(1, 1), (1, 10), (10, 1)], "seconds": 6.0}


def live(quick: bool, rate: float = 50.0, budget_ms: int = 200, workers: int = 2) -> dict:
    """The whole benchmark -> results (see the module docstring)."""
    plan = QUICK if quick else FULL
    codec = Codec.load()
    print("wire cost of a live stream against the latency budget:", flush=True)
    wire = asyncio.run(wire_curve(codec, plan["budgets_ms"], plan["wire_producers"], plan["wire_per_producer"],
                                  rate))
    print(f"latency from a word's write to its decode, budget {budget_ms} ms, {rate:.0f} tokens/s:", flush=True)
    fan = [asyncio.run(fanout(codec, p, s, rate, budget_ms, plan["seconds"], workers)) for p, s in plan["fanout"]]
    return {"plan": {**plan, "rate_tokens_per_s": rate, "budget_ms": budget_ms, "subscriber_processes": workers},
            "texts": "data/test.jsonl" if (ROOT / "data" / "test.jsonl").exists() else str(SAMPLE.relative_to(ROOT)),
            "wire": wire, "fanout": fan}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber-worker":
        subscriber_worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer budgets, producers and subscribers")
    ap.add_argument("--rate", type=float, default=50.0, help="tokens per second per producer")
    ap.add_argument("--workers", type=int, default=2, help="subscriber processes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live.json")
    args = ap.parse_args()
    result = {"command": " ".join(["python", "bench/live.py", *sys.argv[1:]]),
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
              **live(args.quick, args.rate, workers=args.workers)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
