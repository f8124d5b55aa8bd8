"""Pass-through baseline server: the transport's own floor for the service benchmark.

Serves over the same grpc.aio setup as ``rvqstream serve`` (same server options) but does no
coding. ``CodecService.EncodeStream``: each text chunk comes straight back as one response whose
``frames`` field holds the chunk's bytes as they are (the same field a frame batch travels in).
``ChannelService``: ``Publish`` keeps each message's bytes as they are, in memory, per channel;
``Subscribe`` sends a channel's first message as an announcement, then each later one as its own
response in the ``frames`` field a live frame batch travels in, one every millisecond, then
waits a moment before it ends the call, so that a subscriber on its own connection carries
exactly what a live rvqstream subscriber's does, with the anchor's bytes in place of batches.

Run: ``python bench/passthrough.py --listen 127.0.0.1:50052`` (started by bench/load.py).
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc, frame_pb2
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


class PassThroughChannels(channel_pb2_grpc.ChannelServiceServicer):
    def __init__(self):
        self.channels: dict[str, list[bytes]] = {}

    async def Publish(self, request_iterator, context):
        channel = None
        async for req in request_iterator:
            if req.WhichOneof("kind") == "config":
                channel = self.channels.setdefault(req.config.channel, [])
                continue
            channel.append(req.message.text_utf8)
            yield channel_pb2.PublishResponse(offset=len(channel) - 1, sequence=req.message.sequence)

    async def Subscribe(self, request, context):
        stored = self.channels.get(request.channel, [])
        for i, data in enumerate(stored):
            if i == 0:
                yield channel_pb2.SubscribeResponse(message=channel_pb2.ChannelMessage(offset=0, blob=data))
                await asyncio.sleep(0.2)
            else:
                yield channel_pb2.SubscribeResponse(frames=data)
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.5)


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=grpc_options(ServerConfig()))
    codec_pb2_grpc.add_CodecServiceServicer_to_server(PassThrough(), server)
    channel_pb2_grpc.add_ChannelServiceServicer_to_server(PassThroughChannels(), server)
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:50052", help="HOST:PORT")
    asyncio.run(serve(ap.parse_args().listen))


if __name__ == "__main__":
    main()
