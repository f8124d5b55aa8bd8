"""Wire cost of live streams on channels against the latency budget (see bench/live.py).

For each budget, ``producers`` SDK stream writers each stream messages into their own channel of
a real ``rvqstream serve`` at ``rate`` tokens/s, word by word; each channel is followed live by
one subscriber through a counting TCP proxy on loopback. Counted: every byte from the server to
that subscriber on its TCP connection from before the first message to after the last (HTTP/2
frame headers, gRPC prefixes, protobuf fields, message announcements, pings: all of it). The
subscriber's frame batches, decoded afterwards, give the flush points. The anchors carry the same
text cut at the same points, one gRPC message per flush, through the pass-through server
(bench/passthrough.py: the same grpc.aio setup) to a subscriber of its own connection, in the
field a live batch travels in: raw UTF-8, and zstd -19 with the bundle's dictionary in one
streaming context per stream flushed at each point. Framing per flush = rvqstream's wire bytes
minus its coded batch bytes, over its flushes.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import zstandard
from grpc_bytes import GRPC_PREFIX_BYTES, HTTP2_FRAME_HEADER, CountingProxy
from live_streams import sample_texts, words_of, write_message
from load import Server

from rvqstream._proto import channel_pb2, channel_pb2_grpc
from rvqstream.client import AsyncClient
from rvqstream.client.calls import CHANNEL_OPTIONS
from rvqstream.models import Codec
from rvqstream.wire import tier_from_pb


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
    rvq_wire = sum(counts) - sum(r[-1].ByteSize() + GRPC_PREFIX_BYTES + HTTP2_FRAME_HEADER for r in responses)
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
