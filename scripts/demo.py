"""The rvqstream demo: starts a server on the embedded default (SQLite in a temporary directory),
publishes a sample text one line per message, reads it back through a subscriber that decodes
locally, streams the same text through EncodeStream, and prints the bytes on the wire against zstd.

Usage: python scripts/demo.py [TEXT_FILE]
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from rvqstream.client import Client, RvqstreamError

SAMPLE = Path(__file__).with_name("demo_sample.txt")


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

                words = [w + " " for w in text.replace("\n", " ").split(" ") if w]
                frames = list(client.encode_stream(words, max_delay_ms=200))
                decoder = client.decoder(frames[0].model_id, frames[0].tier)
                decoded = "".join(decoder.push(f.frame) for f in frames)
                sent = "".join(words)
                payload = sum(len(f.frame.payload) for f in frames)
                wire = sum(f.wire_bytes for f in frames)
                z = len(zstd.compress(sent.encode()))
                raw = len(sent.encode())
                print(f"\nEncodeStream, {len(words)} chunks, {len(frames)} frames: payload {payload} B "
                      f"({bpb(payload, raw)} bits/byte), gRPC wire {wire} B ({bpb(wire, raw)}); "
                      f"zstd -19 of the whole text {z} B ({bpb(z, raw)}); "
                      f"decoded {'byte-exact' if decoded == sent else 'WITH DIFFERENCES'}")
                if decoded != sent:
                    sys.exit(1)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
