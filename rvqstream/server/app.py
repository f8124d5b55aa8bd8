"""Assembles the server: services, health, reflection, telemetry, keepalive, graceful shutdown.

    server, port = create_server("127.0.0.1:0", ServerConfig(data_dir=tmp))
    await server.start(); ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc
from rvqstream.server.channels import ChannelLimits, ChannelService
from rvqstream.server.codec_service import CodecService
from rvqstream.server.config import ServerConfig
from rvqstream.server.encode import StreamLimits
from rvqstream.server.logstore import LogStore
from rvqstream.server.publish_stream import OpenStreams
from rvqstream.server.registry import ModelRegistry
from rvqstream.server.scheduler import Scheduler
from rvqstream.server.sqlite_store import SQLiteLogStore
from rvqstream.server.telemetry import Telemetry

log = logging.getLogger("rvqstream.server")

SERVICE_NAMES = (
    codec_pb2.DESCRIPTOR.services_by_name["CodecService"].full_name,
    channel_pb2.DESCRIPTOR.services_by_name["ChannelService"].full_name,
)
LOG_FILE = "channels.sqlite3"


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    """Keepalive for long-lived streams and message size limits (with room for framing)."""
    limit = config.max_message_bytes + (64 << 10)
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ]


class RvqServer:
    """A grpc.aio server with the rvqstream services and the resources they own."""

    def __init__(self, config: ServerConfig, registry: ModelRegistry, store: LogStore,
                 telemetry: Telemetry):
        self.config, self.registry, self.store, self.telemetry = config, registry, store, telemetry
        self.grpc = grpc.aio.server(interceptors=telemetry.interceptors(), options=grpc_options(config))
        self.scheduler = Scheduler(telemetry.metrics, config.workers, config.max_queue_delay_ms,
                                   config.max_batch, registry.default.parts.frame)
        limits = StreamLimits(config.max_delay_ms, config.max_message_bytes, config.stream_buffer_bytes,
                              config.stream_queue_frames)
        codec_pb2_grpc.add_CodecServiceServicer_to_server(
            CodecService(registry, self.scheduler, telemetry.metrics, limits), self.grpc)
        self.streams = OpenStreams(store, config.stream_timeout_s)
        channel_pb2_grpc.add_ChannelServiceServicer_to_server(
            ChannelService(store, registry, self.scheduler, telemetry.metrics,
                           ChannelLimits(config.max_message_bytes, config.subscribe_page,
                                         config.subscribe_page_bytes, limits), self.streams), self.grpc)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.grpc)
        self._stopped = False

    async def start(self) -> None:
        self.scheduler.start()
        await self.scheduler.warm_up(self.registry.default)
        await self.streams.start()
        await self.grpc.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, let in-flight RPCs finish for ``grace`` s, then stop."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(self.config.grace_s if grace is None else grace)
        await self.scheduler.close()
        await self.streams.close()
        await self.store.close()
        self.telemetry.shutdown()

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


def create_server(address: str, config: ServerConfig | None = None, registry: ModelRegistry | None = None,
                  telemetry: Telemetry | None = None) -> tuple[RvqServer, int]:
    """A server bound to ``address`` (port 0 picks a free one) -> (server, port); not started."""
    config = config or ServerConfig.from_env()
    registry = registry or ModelRegistry.load(config.model_dirs())
    telemetry = telemetry or Telemetry(config.telemetry)
    store = SQLiteLogStore(config.data_dir / LOG_FILE)
    server = RvqServer(config, registry, store, telemetry)
    port = server.grpc.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


async def serve(config: ServerConfig) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    server, port = create_server(config.listen, config)
    await server.start()
    host = config.listen.rsplit(":", 1)[0]
    log.info("rvqstream serving on %s:%d (data in %s, model %s)", host, port, config.data_dir,
             server.registry.default.model_id[:12])
    print(f"rvqstream: serving on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
