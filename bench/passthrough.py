"""Pass-through baseline server: the transport's own floor for the service benchmark.

Serves ``CodecService.EncodeStream`` over the same grpc.aio setup as ``rvqstream serve`` (same
server options) but does no coding: each text chunk comes straight back as one response whose
``frames`` field holds the chunk's bytes as they are (the same field a frame batch travels in).

Run: ``python bench/passthrough.py --listen 127.0.0.1:50052`` (started by bench/load.py).
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from rvqstream._proto import codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.server.app import grpc_options
from rvqstream.server.config import ServerConfig


class PassThrough(codec_pb2_grpc.CodecServiceServicer):
    async def EncodeStream(self, request_iterator, context):
        async for req in request_iterator:
            if req.WhichOneof("kind") == "config":
                yield codec_pb2.EncodeStreamResponse(header=frame_pb2.StreamHeader(
                    tier=frame_pb2.TIER_EXACT, max_delay_ms=req.config.max_delay_ms))
                continue
            yield codec_pb2.EncodeStreamResponse(frames=req.chunk.text_utf8)


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=grpc_options(ServerConfig()))
    codec_pb2_grpc.add_CodecServiceServicer_to_server(PassThrough(), server)
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:50052", help="HOST:PORT")
    asyncio.run(serve(ap.parse_args().listen))


if __name__ == "__main__":
    main()
