"""Bytes a gRPC stream carries per message: computed from the messages, and counted on loopback.

Computed (``wire_bytes``): each gRPC message costs its protobuf encoding plus the 5-byte gRPC
length prefix. Counted for a message sent as one rvqstream frame batch (one
``EncodeStreamResponse``), as one rvqstream blob (``CompressResponse``), and as one response
carrying the text raw or zstd-compressed with the same trained dictionary in the same field.

Counted (``measured_wire``): every TCP payload byte from server to client (HTTP/2 DATA and HEADERS
frames, window updates, pings: all of it) through a counting proxy on loopback, over one encode
stream per input, stream setup excluded. rvqstream: ``rvqstream serve``, each message written as
one chunk that ends the message, read until its batch. Raw and zstd text: the pass-through
server (bench/passthrough.py) echoing the raw or zstd-compressed message as one chunk.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import zstandard
from load import Server

from rvqstream._proto import codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.models import Codec

GRPC_PREFIX_BYTES = 5     # compressed flag + 4-byte length
HTTP2_FRAME_HEADER = 9    # of the DATA frame each gRPC message travels in
H2_FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
                  6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


def grpc_message_bytes(msg) -> int:
    """Bytes of one protobuf message on a gRPC stream, HTTP/2 framing not counted."""
    return msg.ByteSize() + GRPC_PREFIX_BYTES


def wire_bytes(codec: Codec, texts: list[str], blobs: list[bytes], zdict: zstandard.ZstdCompressionDict) -> dict:
    """Mean bytes per message and bpb for each way of sending ``texts`` (``blobs``: their
    exact-tier blobs), protobuf + gRPC prefix."""
    cz = zstandard.ZstdCompressor(level=19, dict_data=zdict)
    totals = Counter()
    frames = 0
    for t, blob in zip(texts, blobs):
        enc = codec.encoder()
        enc.push(t)
        batch = enc.end_message()
        frames += batch.frames
        totals["rvqstream frames"] += grpc_message_bytes(codec_pb2.EncodeStreamResponse(frames=batch.data))
        totals["rvqstream frame payloads only"] += len(batch.data)
        totals["rvqstream blob"] += grpc_message_bytes(codec_pb2.CompressResponse(blob=blob))
        for name, payload in (("raw text", t.encode()), ("zstd-19+dict text", cz.compress(t.encode()))):
            totals[name] += grpc_message_bytes(codec_pb2.EncodeStreamResponse(frames=payload))
    nbytes = sum(len(t.encode()) for t in texts)
    return {"messages": len(texts), "bytes": nbytes, "rvqstream_frames_per_message": frames / len(texts),
            "bytes_per_message": {k: v / len(texts) for k, v in totals.items()},
            "bpb": {k: 8 * v / nbytes for k, v in totals.items()}}


class CountingProxy:
    """A TCP proxy on loopback that counts the bytes flowing from the server to the client, in
    all (``down``) and by HTTP/2 frame type (``by_type``: DATA, HEADERS, PING, ...)."""

    def __init__(self, port: int):
        self.port, self.down = port, 0
        self.by_type: Counter = Counter()
        self._pending = b""

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _handle(self, cr, cw) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            await asyncio.gather(self._pipe(cr, sw, False), self._pipe(sr, cw, True), return_exceptions=True)
        except asyncio.CancelledError:   # the event loop ends with the connection still open
            sw.close()
            cw.close()

    def _tally(self, data: bytes) -> None:
        """Attributes the server's bytes to HTTP/2 frame types (9-byte header: 24-bit length,
        8-bit type)."""
        buf = self._pending + data
        while len(buf) >= 9:
            size = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + size:
                break
            self.by_type[H2_FRAME_TYPES.get(buf[3], str(buf[3]))] += 9 + size
            buf = buf[9 + size:]
        self._pending = buf

    async def _pipe(self, reader, writer, count: bool) -> None:
        while data := await reader.read(1 << 16):
            if count:
                self.down += len(data)
                self._tally(data)
            writer.write(data)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        self._server.close()


async def _count(port: int, chunks: list[bytes]) -> int:
    """Server-to-client bytes of one encode stream carrying ``chunks`` (each ends a message),
    from after the stream header to the last message's end."""
    proxy = CountingProxy(port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{await proxy.start()}") as ch:
        call = codec_pb2_grpc.CodecServiceStub(ch).EncodeStream()
        await call.write(codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig()))
        await call.read()
        start = proxy.down
        for c in chunks:
            await call.write(codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=c,
                                                                                     end_message=True)))
            await call.read()       # one batch (rvqstream) or one echo (pass-through) per chunk
        used = proxy.down - start
        await call.done_writing()
    await proxy.stop()
    return used


async def measured_wire(inputs: dict[str, list[str]], zdict: zstandard.ZstdCompressionDict) -> dict:
    """Per input: mean server-to-client bytes per message and bpb, rvqstream frames against the
    same messages passed through raw and zstd-compressed."""
    cz = zstandard.ZstdCompressor(level=19, dict_data=zdict)
    counts: dict[str, dict[str, int]] = {name: {} for name in inputs}
    for passthrough in (False, True):
        server = Server(budget_ms=200, workers=1, passthrough=passthrough)
        try:
            await server.ready()
            for name, texts in inputs.items():
                raw = [t.encode() for t in texts]
                if passthrough:
                    counts[name]["raw text"] = await _count(server.port, raw)
                    counts[name]["zstd-19+dict text"] = await _count(server.port, [cz.compress(b) for b in raw])
                else:
                    counts[name]["rvqstream frames"] = await _count(server.port, raw)
        finally:
            server.stop()
    out = {}
    for name, texts in inputs.items():
        nbytes = sum(len(t.encode()) for t in texts)
        out[name] = {"messages": len(texts), "bytes": nbytes,
                     "bytes_per_message": {k: v / len(texts) for k, v in counts[name].items()},
                     "bpb": {k: 8 * v / nbytes for k, v in counts[name].items()}}
    return out
