"""The rvqstream demo: starts a server on the embedded default (SQLite in a temporary directory),
publishes a sample text one line per message, reads it back through a subscriber that decodes
locally, streams the same text through EncodeStream, and prints the bytes on the wire against zstd.

Usage: python scripts/demo.py [TEXT_FILE]
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from grpc_bytes import GRPC_PREFIX_BYTES, HTTP2_FRAME_HEADER, CountingProxy

from rvqstream.client import AsyncClient, Client, RvqstreamError

SAMPLE = Path(__file__).with_name("demo_sample.txt")
RATE_TOKENS_PER_S = 50.0
BUDGET_MS = 200
FRAMING_BYTES = HTTP2_FRAME_HEADER + GRPC_PREFIX_BYTES + 2    # and the protobuf field's tag and length


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "rvqstream.cli", "serve", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with Client(f"127.0.0.1:{port}", cache_dir=data_dir / "cache", reconnect_timeout_s=0) as client:
        for _ in range(300):
            if proc.poll() is not None:
                sys.exit(f"the server exited: {proc.stderr.read().decode()}")
            try:
                client.models()
                return proc
            except RvqstreamError:
                time.sleep(0.1)
    sys.exit("the server did not start within 30 s")


def bpb(compressed: int, raw: int) -> str:
    return f"{8 * compressed / raw:5.2f}"


async def live(target: str, cache_dir: Path, lines: list[str]) -> None:
    """A producer streams ``lines`` (one message each) word by word; followers A and B print the
    text as it arrives; then the bytes on the wire against raw text and a zstd stream."""
    port = int(target.rsplit(":", 1)[1])
    async with AsyncClient(target, cache_dir=cache_dir) as producer:
        codec = await producer.model("")
        await producer.publish("live", ["(the channel opens)"])
        proxies = {name: CountingProxy(port) for name in "AB"}
        targets = {name: f"127.0.0.1:{await px.start()}" for name, px in proxies.items()}
        written: dict[tuple[int, int], float] = {}      # (message, characters so far) -> moment written
        got: dict[str, list[tuple[int, str, float]]] = {"A": [], "B": []}
        t0 = time.monotonic()
        print(f"\na producer streams {len(lines)} messages word by word at {RATE_TOKENS_PER_S:.0f} tokens/s "
              f"(latency budget {BUDGET_MS} ms); followers A and B decode them live:\n")
        print(f"{'time':>6} {'who':>3} {'msg':>3} {'delay':>6}   text as it arrives")

        async def follow(name: str) -> None:
            async with AsyncClient(targets[name], cache_dir=cache_dir) as client:
                chars: dict[int, int] = {}
                async for d in client.follow("live", 1):
                    now = time.monotonic()
                    chars[d.offset] = chars.get(d.offset, 0) + len(d.text)
                    got[name].append((d.offset, d.text, now))
                    if d.text:
                        first = min((t for (o, c), t in written.items() if o == d.offset
                                     and c > chars[d.offset] - len(d.text)), default=now)
                        print(f"{now - t0:5.2f}s {name:>3} {d.offset:>3} {1000 * (now - first):4.0f}ms   "
                              f"{d.text!r}", flush=True)
                    if d.done and d.offset == len(lines):
                        return

        followers = [asyncio.create_task(follow(name)) for name in "AB"]
        await asyncio.sleep(0.5)
        starts = {name: px.down for name, px in proxies.items()}
        async with producer.open_stream("live", max_delay_ms=BUDGET_MS) as w:
            for offset, line in enumerate(lines, 1):
                sent, next_t = 0, time.monotonic()
                for i, word in enumerate(line.split(" ")):
                    chunk = word if i == 0 else " " + word
                    await asyncio.sleep(max(0.0, next_t - time.monotonic()))
                    await w.write(chunk)
                    sent += len(chunk)
                    written[(offset, sent)] = time.monotonic()
                    next_t += len(codec.parts.tokenizer.encode(chunk)) / RATE_TOKENS_PER_S
                await w.end_message()
        await asyncio.wait_for(asyncio.gather(*followers), 60)
        used = {name: px.down - starts[name] for name, px in proxies.items()}
        for px in proxies.values():
            await px.stop()
    for name in "AB":
        texts = ["".join(t for o, t, _ in got[name] if o == k) for k in range(1, len(lines) + 1)]
        if texts != lines:
            sys.exit(f"follower {name} decoded text that differs from what was written")
    segments = [t.encode() for _, t, _ in got["A"] if t]
    flushes = len(got["A"])
    zdict = zstandard.ZstdCompressionDict(codec.parts.zdict)
    cobj = zstandard.ZstdCompressor(level=19, dict_data=zdict).compressobj()
    zstd = sum(len(cobj.compress(s) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)) for s in segments)
    raw = sum(len(s) for s in segments)
    print(f"\nbytes on the wire for {raw} B of text in {flushes} flushes (one message per line):")
    for name in "AB":
        print(f"  rvqstream live frames, follower {name}'s TCP connection (counted):  {used[name]:6d} B  "
              f"({bpb(used[name], raw)} bits/byte)")
    for label, payload in (("raw text", raw), ("zstd -19 + dictionary, one streaming context", zstd)):
        total = payload + FRAMING_BYTES * flushes
        print(f"  {label}, same flush points and gRPC framing: {total:6d} B  ({bpb(total, raw)} bits/byte)")
    print("every message decoded byte-exact by both followers, each on its own connection")


def main() -> None:
    text = Path(sys.argv[1] if len(sys.argv) > 1 else SAMPLE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    zstd = zstandard.ZstdCompressor(level=19)
    with tempfile.TemporaryDirectory(prefix="rvqstream-demo-") as tmp:
        tmp_dir, port = Path(tmp), free_port()
        server = start_server(tmp_dir / "data", port)
        try:
            with Client(f"127.0.0.1:{port}", cache_dir=tmp_dir / "cache") as client:
                model = client.models()[0]
                print(f"server 127.0.0.1:{port}, model {model.model_id[:16]}… ({model.size_bytes / 1e6:.1f} MB)\n")
                offsets = client.publish("demo", lines)
                print(f"published {len(offsets)} messages (offsets {offsets[0]}..{offsets[-1]}); subscriber:\n")
                print(f"{'off':>3} {'text B':>6} {'blob B':>6} {'wire B':>6} {'zstd B':>6}   message")
                totals = [0, 0, 0, 0]
                for msg in client.subscribe("demo"):
                    raw = len(msg.text.encode())
                    z = len(zstd.compress(msg.text.encode()))
                    assert msg.text == lines[msg.offset], "decoded text differs from the published text"
                    totals = [t + v for t, v in zip(totals, (raw, msg.compressed_bytes, msg.wire_bytes, z))]
                    print(f"{msg.offset:>3} {raw:>6} {msg.compressed_bytes:>6} {msg.wire_bytes:>6} {z:>6}"
                          f"   {msg.text[:56]}")
                    if msg.offset == offsets[-1]:
                        break
                print(f"\nper message, {totals[0]} bytes of text: rvqstream blobs {totals[1]} B "
                      f"({bpb(totals[1], totals[0])} bits/byte), with gRPC framing {totals[2]} B "
                      f"({bpb(totals[2], totals[0])}), zstd -19 {totals[3]} B ({bpb(totals[3], totals[0])}); "
                      "every message decoded byte-exact")

            asyncio.run(live(f"127.0.0.1:{port}", tmp_dir / "cache", lines))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
