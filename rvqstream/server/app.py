"""Assembles the server: transport security, the gate (authentication, authorization, per-client
limits), services, health, optional reflection, telemetry, keepalive and connection limits,
graceful shutdown.

    server, port = create_server("127.0.0.1:0", ServerConfig(data_dir=tmp))
    await server.start(); ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from rvqstream._proto import channel_pb2, channel_pb2_grpc, codec_pb2, codec_pb2_grpc
from rvqstream.server.access import AccessRules
from rvqstream.server.channel_codes import ChannelCodes
from rvqstream.server.channels import ChannelLimits, ChannelService
from rvqstream.server.codec_service import CodecService
from rvqstream.server.config import ServerConfig
from rvqstream.server.disk import FreeSpace
from rvqstream.server.encode import StreamLimits
from rvqstream.server.gate import Gate
from rvqstream.server.logstore import LogStore, LogUnavailable, Retention
from rvqstream.server.nats_log import NatsLogStore
from rvqstream.server.publish_stream import OpenStreams
from rvqstream.server.registry import ModelRegistry
from rvqstream.server.scheduler import Scheduler
from rvqstream.server.sqlite_retention import MAX_REMOVED
from rvqstream.server.sqlite_store import SQLiteLogStore
from rvqstream.server.stream_codes import AbortCoder
from rvqstream.server.telemetry import Telemetry
from rvqstream.server.tls import ListenError, ServerTLS, check_listen, server_tls
from rvqstream.server.work_pool import WorkPool

log = logging.getLogger("rvqstream.server")

SERVICE_NAMES = (
    codec_pb2.DESCRIPTOR.services_by_name["CodecService"].full_name,
    channel_pb2.DESCRIPTOR.services_by_name["ChannelService"].full_name,
)
LOG_FILE = "channels.sqlite3"
RETENTION_EVERY_S = 30.0


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    """Keepalive for long-lived streams, message size limits (with room for framing), HTTP/2
    streams per connection, and connection idle and age limits."""
    limit = config.max_message_bytes + (64 << 10)
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.max_concurrent_streams", config.max_streams_per_connection),
        ("grpc.max_connection_idle_ms", int(config.connection_idle_s * 1000)),
        ("grpc.max_connection_age_ms", int(config.connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(config.connection_age_grace_s * 1000)),
    ]


class RvqServer:
    """A grpc.aio server with the rvqstream services and the resources they own."""

    def __init__(self, config: ServerConfig, registry: ModelRegistry, store: LogStore,
                 telemetry: Telemetry, tls: ServerTLS | None = None):
        self.config, self.registry, self.store, self.telemetry = config, registry, store, telemetry
        self.tls = tls
        rules_path = Path(config.auth_tokens) if config.auth_tokens else None
        self.gate = Gate(AccessRules.load(rules_path) if rules_path else None, rules_path,
                         mtls=bool(config.tls_client_ca), max_calls_per_client=config.max_calls_per_client)
        self.grpc = grpc.aio.server(interceptors=[self.gate, *telemetry.interceptors()],
                                    options=grpc_options(config),
                                    maximum_concurrent_rpcs=config.max_concurrent_rpcs)
        self.scheduler = Scheduler(telemetry.metrics, config.workers, config.max_queue_delay_ms,
                                   config.max_batch, registry.default.parts.frame)
        self.pool = WorkPool(config.unary_workers, config.unary_queue, config.max_call_s)
        limits = StreamLimits(config.max_delay_ms, config.max_message_bytes, config.stream_buffer_bytes,
                              config.stream_queue_frames)
        codec_pb2_grpc.add_CodecServiceServicer_to_server(
            CodecService(registry, self.scheduler, self.pool, telemetry.metrics, limits), self.grpc)
        codes = ChannelCodes(store, registry.codes, config.index_codes) if config.message_codes else None
        self.streams = OpenStreams(store, config.stream_timeout_s,
                                   AbortCoder(store, registry, codes, self.pool) if codes else None)
        channel_pb2_grpc.add_ChannelServiceServicer_to_server(
            ChannelService(store, registry, self.scheduler, self.pool, telemetry.metrics,
                           ChannelLimits(config.max_message_bytes, config.subscribe_page,
                                         config.subscribe_page_bytes, limits), self.streams,
                           FreeSpace(config.data_dir, config.min_free_bytes),
                           codes), self.grpc)
        self.retention = Retention(config.retention_age_s, config.retention_bytes)
        self._retainer: asyncio.Task | None = None
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        # the health-only listener (--health-listen): the same statuses, nothing else
        self.health_grpc = grpc.aio.server() if config.health_listen else None
        if self.health_grpc is not None:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_grpc)
        if config.reflection:
            reflection.enable_server_reflection(
                (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME), self.grpc)
        self._stopped = False

    async def start(self) -> None:
        await self.store.start()
        self.scheduler.start()
        await self.scheduler.warm_up(self.registry.default)
        await self.streams.start()
        if self.retention.enabled:
            self._retainer = asyncio.create_task(self._retain(), name="rvqstream-retention")
        await self.grpc.start()
        if self.health_grpc is not None:
            await self.health_grpc.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, let in-flight RPCs finish for ``grace`` s, then stop."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(self.config.grace_s if grace is None else grace)
        if self.health_grpc is not None:
            await self.health_grpc.stop(0)
        if self._retainer is not None:
            self._retainer.cancel()
            await asyncio.gather(self._retainer, return_exceptions=True)
        await self.scheduler.close()
        self.pool.close()
        await self.streams.close()
        await self.store.close()
        self.telemetry.shutdown()

    def reload(self) -> None:
        """SIGHUP: the access file and the TLS files are read again; one that does not load leaves
        what was in force."""
        self.gate.reload()
        if self.tls is not None:
            try:
                self.tls.reload()
                log.info("TLS certificate reloaded")
            except ListenError as e:
                log.error("TLS files not reloaded, the old ones stay in use: %s", e)

    async def _retain(self) -> None:
        """Applies the retention settings every ``RETENTION_EVERY_S`` (sooner while it removes)."""
        while True:
            try:
                removed = await self.store.retain(self.retention)
            except Exception:
                log.exception("retention failed")
                removed = 0
            if removed:
                log.info("retention removed %d messages", removed)
            await asyncio.sleep(0 if removed >= MAX_REMOVED else RETENTION_EVERY_S)

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


def channel_log(config: ServerConfig) -> LogStore:
    """The channel log ``config`` names: SQLite in ``data_dir``, or NATS JetStream (``log``);
    ``ValueError`` for a bad ``log`` URL or settings JetStream does not take."""
    if not config.log:
        return SQLiteLogStore(config.data_dir / LOG_FILE, config.max_log_bytes)
    servers = config.log.split(",")
    if not all(s.startswith("nats://") and len(s) > len("nats://") for s in servers):
        raise ValueError(f"--log {config.log!r}: expected nats://HOST:PORT[,nats://HOST:PORT...]")
    if config.max_log_bytes:
        raise ValueError("--max-log-bytes bounds the SQLite log's file; a JetStream log is bounded by "
                         "--retention-age-s, --retention-bytes and the NATS servers' own limits")
    if config.nats_replicas < 1:
        raise ValueError(f"--nats-replicas is {config.nats_replicas}; at least 1")
    return NatsLogStore(servers, config.data_dir, config.nats_prefix, config.nats_replicas, config.nats_credentials,
                        config.max_message_bytes)


def create_server(address: str, config: ServerConfig | None = None, registry: ModelRegistry | None = None,
                  telemetry: Telemetry | None = None) -> tuple[RvqServer, int]:
    """A server bound to ``address`` (port 0 picks a free one) -> (server, port); not started."""
    config = config or ServerConfig.from_env()
    registry = registry or ModelRegistry.load(config.model_dirs(), device=config.device)
    telemetry = telemetry or Telemetry(config.telemetry)
    tls = server_tls(config.tls_cert, config.tls_key, config.tls_client_ca)
    check_listen(address, tls, config.insecure)
    store = channel_log(config)
    server = RvqServer(config, registry, store, telemetry, tls)
    port = (server.grpc.add_secure_port(address, tls.credentials()) if tls is not None
            else server.grpc.add_insecure_port(address))
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    if server.health_grpc is not None and server.health_grpc.add_insecure_port(config.health_listen) == 0:
        raise OSError(f"cannot listen on {config.health_listen} (--health-listen)")
    return server, port


async def serve(config: ServerConfig) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully; SIGHUP reloads the access file
    and the TLS files."""
    try:
        server, port = create_server(config.listen, config)
    except ValueError as e:     # the listen address, TLS files, access file or log settings
        raise SystemExit(f"rvqstream serve: {e}") from None
    try:
        await server.start()
    except (LogUnavailable, ValueError) as e:     # the channel log's cluster, or its settings
        raise SystemExit(f"rvqstream serve: {e}") from None
    # what exists now (modules, models, the warm-up's objects) lives as long as the server: moved
    # out of the collector's sight, a full collection traces only what came later (a 25 ms pause
    # at 60 streams, which made frames miss their deadlines, becomes about 5 ms)
    gc.freeze()
    host = config.listen.rsplit(":", 1)[0]
    log.info("rvqstream serving on %s:%d (%s, %s; channels in %s, model %s)", host, port,
             "mTLS" if config.tls_client_ca else "TLS" if config.tls_cert else "plaintext",
             f"{len(server.gate.rules)} identities" if server.gate.rules is not None else "no access file",
             config.log or config.data_dir, server.registry.default.model_id[:12])
    print(f"rvqstream: serving on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
