"""Attacks on a real server, each measured against a baseline taken in the same run.

- **zstd bomb**: a ~32 KiB fallback-form blob that expands to 1 GiB, sent to ``Decompress`` three
  times; the server's peak RSS before and after (bar: < 50 MB more).
- **stream under a flood**: an encode stream's first-frame latency (text sent to first frame
  batch back, budget 200 ms) alone, then while ``FLOOD_CLIENTS`` clients send costly ``Decompress``
  calls without pause (bar: within budget + 50 ms); what became of the flood's calls.
- **1 MiB compress**: one ``Compress`` of 1 MiB of text (less 4 KiB, inside the server's 1 MiB
  limit on a text) in the exact tier, the costliest call a client can make; the server's peak RSS
  growth during it (bar: < 500 MB) and its seconds (the integer model codes some 10-20 kB/s on one
  core, so about a minute or two).
- **bad sequence**: 16 producers publish 15 messages each at once while one more sends a sequence
  of 2^63 (bar: only its own call fails).
- **stalled subscribers**: a channel of 64 one-MB messages; ``STALLED`` subscribers that read one
  response and stop; the server's RSS growth against no subscriber.
- **held tail**: text with no word break pushed in 1 KiB pieces into a stream encoder (fallback
  form, so only tokenization counts): seconds for 1 MiB and 2 MiB (linear: a ratio near 2).

Run: ``python bench/attacks.py [--out bench/results] [--parts exact_compress,...]``
(``make bench-attacks``); writes ``attacks.json`` (with ``--parts``, the other parts' results are
kept from it), which the scoreboard's report shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import zstandard
from load import Server

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.models import Codec
from rvqstream.models.blob import Mode, header
from rvqstream.models.coding import text_check
from rvqstream.models.errors import Cancel
from rvqstream.server.logstore import Record
from rvqstream.server.sqlite_store import SQLiteLogStore

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20
BUDGET_MS = 200
FLOOD_CLIENTS = 8
TRIALS = 20
STALLED = 20
COMMON_WORDS = ("the of and to in is was that for it with as his on be at by had not are but from or have an "
         "they which one you were all her she there would their we him been has when who will more no if "
         "out so said what up its about into than them can only other new some could time these two may "
         "then do first any my now such like our over man me even most made")


def zstd_bomb(codec: Codec, size: int = 1 << 30) -> bytes:
    cctx = zstandard.ZstdCompressor(level=1, write_checksum=False, write_content_size=False)
    obj, out, zeros = cctx.compressobj(), [], bytes(MB)
    for _ in range(size // MB):
        out.append(obj.compress(zeros))
    out.append(obj.flush())
    return header(Mode.ZSTD, codec.model_id) + b"".join(out)[4:] + text_check(bytes(size), 16).to_bytes(2, "big")


def costly_blob(codec: Codec, words: int = 2500) -> bytes:
    """A valid exact-tier blob whose decoding puts ``words`` words through the model."""
    rng, vocabulary = random.Random(7), COMMON_WORDS.split()
    text = " ".join(rng.choice(vocabulary) for _ in range(words))
    return header(Mode.EXACT, codec.model_id) + codec._blobs._exact(text, 0, Cancel())


async def bomb(codec: Codec) -> dict:
    server = Server(BUDGET_MS, 2)
    try:
        await server.ready()
        blob = zstd_bomb(codec)
        async with grpc.aio.insecure_channel(server.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            await stub.Decompress(codec_pb2.DecompressRequest(blob=codec.compress("warm up")), timeout=60)
            before = server.peak_rss_bytes()
            codes = []
            for _ in range(3):
                try:
                    await stub.Decompress(codec_pb2.DecompressRequest(blob=blob), timeout=60)
                    codes.append("OK")
                except grpc.aio.AioRpcError as e:
                    codes.append(e.code().name)
            after = server.peak_rss_bytes()
        return {"blob_bytes": len(blob), "expands_to_bytes": 1 << 30, "statuses": codes,
                "peak_rss_before_bytes": before, "peak_rss_after_bytes": after,
                "peak_rss_growth_bytes": after - before, "bar_bytes": 50 * 10**6}
    finally:
        server.stop()


async def first_frame_ms(stub) -> float:
    """Milliseconds from a stream's first text to its first frame batch."""
    call = stub.EncodeStream()
    await call.write(codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(max_delay_ms=BUDGET_MS)))
    await call.read()                      # the header
    t = time.monotonic()
    await call.write(codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=b"hello there, world")))
    await call.read()
    ms = (time.monotonic() - t) * 1000
    await call.done_writing()
    while await call.read() is not grpc.aio.EOF:
        pass
    return ms


def summary(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"median_ms": statistics.median(s), "p95_ms": s[int(0.95 * (len(s) - 1))], "max_ms": s[-1],
            "n": len(s)}


async def flood(codec: Codec) -> dict:
    server = Server(BUDGET_MS, 2)
    try:
        await server.ready()
        blob = costly_blob(codec)
        async with grpc.aio.insecure_channel(server.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            await first_frame_ms(stub)
            alone = [await first_frame_ms(stub) for _ in range(TRIALS)]
            outcomes: dict[str, int] = {}
            stop = asyncio.Event()

            async def attacker():
                async with grpc.aio.insecure_channel(server.target) as ach:
                    astub = codec_pb2_grpc.CodecServiceStub(ach)
                    while not stop.is_set():
                        try:
                            await astub.Decompress(codec_pb2.DecompressRequest(blob=blob), timeout=5)
                            key = "OK"
                        except grpc.aio.AioRpcError as e:
                            key = e.code().name
                        outcomes[key] = outcomes.get(key, 0) + 1
                        if key == "RESOURCE_EXHAUSTED":
                            await asyncio.sleep(0.05)

            attackers = [asyncio.create_task(attacker()) for _ in range(FLOOD_CLIENTS)]
            await asyncio.sleep(1.0)
            flooded = []
            for _ in range(TRIALS):
                flooded.append(await first_frame_ms(stub))
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*attackers)
        return {"budget_ms": BUDGET_MS, "bar_ms": BUDGET_MS + 50, "alone": summary(alone),
                "under_flood": summary(flooded), "flood_clients": FLOOD_CLIENTS,
                "costly_blob_bytes": len(blob), "flood_outcomes": outcomes}
    finally:
        server.stop()


async def exact_compress(data: list[str]) -> dict:
    """One exact-tier Compress of the first lines of ``data`` up to 1 MiB less 4 KiB: the server's
    peak RSS (bytes) before and after, and the call's seconds."""
    server = Server(BUDGET_MS, 2, extra=("--max-call-s", "600"))
    try:
        await server.ready()
        text = ""
        for line in data:
            text += line + "\n"
            if len(text.encode()) >= MB - 4096:
                break
        raw = text.encode()[:MB - 4096].decode("utf-8", "ignore").encode()
        async with grpc.aio.insecure_channel(server.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            await stub.Compress(codec_pb2.CompressRequest(text_utf8=b"warm up", tier=frame_pb2.TIER_EXACT),
                                timeout=60)
            before = server.peak_rss_bytes()
            t = time.monotonic()
            resp = await stub.Compress(codec_pb2.CompressRequest(text_utf8=raw, tier=frame_pb2.TIER_EXACT),
                                       timeout=900)
            seconds = time.monotonic() - t
            after = server.peak_rss_bytes()
        return {"text_bytes": len(raw), "blob_bytes": len(resp.blob), "seconds": seconds,
                "peak_rss_before_bytes": before, "peak_rss_after_bytes": after,
                "peak_rss_growth_bytes": after - before, "bar_bytes": 500 * 10**6}
    finally:
        server.stop()


def bad_sequence(target: str) -> dict:
    errors, acks = [], []

    def publish(i: int, sequence: int) -> None:
        with grpc.insecure_channel(target) as ch:
            stub = channel_pb2_grpc.ChannelServiceStub(ch)
            reqs = [channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel="seq", producer_id=f"p{i}"))]
            reqs += [channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
                text_utf8=f"message {i}.{k}".encode(), sequence=sequence + k)) for k in range(15)]
            try:
                acks.extend(stub.Publish(iter(reqs), timeout=120))
            except grpc.RpcError as e:
                errors.append((i, e.code().name))

    threads = [threading.Thread(target=publish, args=(i, 1 << 63 if i == 16 else 1)) for i in range(17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"honest_publishes": 16 * 15, "honest_acked": len(acks),
            "failed_calls": [{"producer": i, "status": c} for i, c in errors]}


async def sequence_and_stalls() -> dict:
    data_dir = tempfile.mkdtemp(prefix="rvqstream-attacks-")
    store = SQLiteLogStore(Path(data_dir) / "channels.sqlite3")
    model_id = Codec.load().model_id
    rng = random.Random(1)
    for _ in range(64):
        await store.append("big", [Record(rng.randbytes(MB), model_id)])
    await store.close()
    server = Server(BUDGET_MS, 2, data_dir=data_dir)
    try:
        await server.ready()
        seq = await asyncio.to_thread(bad_sequence, server.target)
        await asyncio.sleep(1)
        base = server.peak_rss_bytes("VmRSS")
        channels, calls = [], []
        for _ in range(STALLED):
            ch = grpc.aio.insecure_channel(server.target)
            call = channel_pb2_grpc.ChannelServiceStub(ch).Subscribe(channel_pb2.SubscribeRequest(channel="big"))
            await call.read()
            channels.append(ch)
            calls.append(call)
        await asyncio.sleep(3)
        held = server.peak_rss_bytes("VmRSS")
        for call, ch in zip(calls, channels):
            call.cancel()
            await ch.close()
        return {"bad_sequence": seq, "stalled_subscribers": {
            "subscribers": STALLED, "message_bytes": MB, "messages": 64, "rss_before_bytes": base,
            "rss_with_stalled_bytes": held, "growth_per_subscriber_bytes": (held - base) / STALLED}}
    finally:
        server.stop()


def held_tail(codec: Codec) -> dict:
    out = {}
    for size in (MB, 2 * MB):
        enc = codec.encoder()
        enc.fallback_only = True
        piece = "=" * 1024
        t = time.monotonic()
        for _ in range(size // 1024):
            enc.push(piece)
        enc.end_message()
        out[f"{size // MB}MiB_seconds"] = time.monotonic() - t
    out["ratio_2MiB_to_1MiB"] = out["2MiB_seconds"] / out["1MiB_seconds"]
    return out


def report_section(results: dict) -> str:
    """The attacks section of REPORT.md."""
    b, f, c = results["bomb"], results["flood"], results["exact_compress"]
    st, seq, ht = results["stalled_subscribers"], results["bad_sequence"], results["held_tail"]
    mb = 1e6
    return (
        "## Attacks (bench/attacks.py)\n\n"
        "| attack | measured | bar |\n|---|---|---|\n"
        f"| zstd bomb ({b['blob_bytes'] / 1024:.0f} KiB -> 1 GiB), Decompress x3 | "
        f"{', '.join(sorted(set(b['statuses'])))}; peak RSS +{b['peak_rss_growth_bytes'] / mb:.1f} MB | < 50 MB |\n"
        f"| first frame, alone | median {f['alone']['median_ms']:.0f} ms, max {f['alone']['max_ms']:.0f} ms | |\n"
        f"| first frame, {f['flood_clients']} clients flooding costly Decompress | median "
        f"{f['under_flood']['median_ms']:.0f} ms, p95 {f['under_flood']['p95_ms']:.0f} ms, max "
        f"{f['under_flood']['max_ms']:.0f} ms (flood: {f['flood_outcomes']}) | <= {f['bar_ms']} ms |\n"
        f"| exact-tier Compress of {c['text_bytes'] / mb:.2f} MB | peak RSS +{c['peak_rss_growth_bytes'] / mb:.0f} MB "
        f"in {c['seconds']:.0f} s | < 500 MB |\n"
        f"| sequence 2^63 beside {seq['honest_publishes']} honest publishes | {seq['honest_acked']} acked; "
        f"failed: {seq['failed_calls']} | only its own call |\n"
        f"| {st['subscribers']} stalled subscribers, 64 x 1 MB messages | RSS "
        f"+{st['growth_per_subscriber_bytes'] / mb:.2f} MB each | bounded by the page bytes |\n"
        f"| 1 / 2 MiB with no word break, 1 KiB pushes | {ht['1MiB_seconds']:.2f} s / {ht['2MiB_seconds']:.2f} s "
        f"(x{ht['ratio_2MiB_to_1MiB']:.2f}) | linear |\n")


PARTS = ("bomb", "flood", "sequence_and_stalls", "exact_compress", "held_tail")


async def run(jsonl: Path | None, parts: list[str]) -> dict:
    """The results of ``parts`` (``PARTS``), by result key."""
    codec = Codec.load()
    out = {}
    if "bomb" in parts:
        out["bomb"] = await bomb(codec)
    if "flood" in parts:
        out["flood"] = await flood(codec)
    if "sequence_and_stalls" in parts:
        out.update(await sequence_and_stalls())
    if "exact_compress" in parts:
        data = [json.loads(line)["text"] for line in jsonl.open()] if jsonl and jsonl.exists() else \
            [" ".join(random.Random(i).choice(COMMON_WORDS.split()) for _ in range(200)) for i in range(2000)]
        out["exact_compress"] = await exact_compress(data)
    if "held_tail" in parts:
        out["held_tail"] = held_tail(codec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--jsonl", type=Path, default=ROOT / "data" / "valid.jsonl",
                        help="text for the 1 MiB compress (random words when absent)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated parts to run; the others are kept from <out>/attacks.json")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        sys.exit(f"unknown parts {sorted(unknown)}; parts: {', '.join(PARTS)}")
    path = args.out / "attacks.json"
    results = json.loads(path.read_text()) if set(parts) != set(PARTS) and path.exists() else {}
    t = time.monotonic()
    results.update(asyncio.run(run(args.jsonl, parts)))
    seconds = results.get("seconds")
    results["seconds"] = {**(seconds if isinstance(seconds, dict) else {}), args.parts: time.monotonic() - t}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(report_section(results))


if __name__ == "__main__":
    sys.exit(main())
