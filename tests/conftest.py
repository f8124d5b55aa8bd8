"""Shared fixtures: a real rvqstream server on 127.0.0.1 (port 0) with a real channel log, either
in a thread of this process or as a separate ``rvqstream serve`` process that a test can kill.

The channel log is SQLite; a module marked ``channel_suite`` runs every test twice, on SQLite and
on NATS JetStream (a real single-node ``nats-server``, started once per session; each server gets
its own stream prefix), through the ``channel_log`` fixture."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats_servers import NatsServer

from rvqstream.models import Codec
from rvqstream.models.bundle import DEFAULT_DIR, SEMANTIC_DIR
from rvqstream.server import ServerConfig, create_server
from rvqstream.server.registry import ModelRegistry
from rvqstream.server.telemetry import Telemetry

# the shipped bundles by kind: the integer model (the default: exact tier only, no RVQ stages) and
# the float model (frame encoder, RVQ codebooks: exact-tier RVQ stages, and reading the retired
# semantic tier's data)
BUNDLE_DIRS = {"intlm": DEFAULT_DIR, "float": SEMANTIC_DIR}

# semantic-tier data written by the float bundle before the tier was retired (blobs of format
# version 3 and stream batches), with what each decodes to
LEGACY_SEMANTIC = json.loads((Path(__file__).parent / "data" / "semantic_v3.json").read_text())


def legacy_semantic_blobs() -> list[tuple[bytes, str]]:
    """(version-3 semantic blob, its decoded text) of each committed case."""
    return [(base64.b64decode(c["blob"]), c["decoded"]) for c in LEGACY_SEMANTIC["blobs"]]


def legacy_semantic_streams() -> list[tuple[list[bytes], int, str]]:
    """(semantic-tier batches, stages, decoded text) of each committed stream."""
    return [([base64.b64decode(b) for b in c["batches"]], c["stages"], c["decoded"])
            for c in LEGACY_SEMANTIC["streams"]]


@pytest.fixture(scope="session")
def codecs() -> dict[str, Codec]:
    """Each shipped bundle's codec by kind, loaded once."""
    return {kind: Codec.load(path) for kind, path in BUNDLE_DIRS.items()}


@pytest.fixture(scope="session")
def int_codec(codecs) -> Codec:
    """The default bundle: the integer model."""
    return codecs["intlm"]


@pytest.fixture(scope="session")
def float_codec(codecs) -> Codec:
    """The float bundle: what tests of RVQ stages and of old semantic-tier data need."""
    return codecs["float"]


@pytest.fixture(scope="session", params=list(BUNDLE_DIRS))
def each_codec(request, codecs) -> Codec:
    """Each shipped bundle in turn, for tests about the exact tier in general."""
    return codecs[request.param]


@pytest.fixture(scope="session")
def registry() -> ModelRegistry:
    """The shipped models (the integer default, then the float one), loaded once for every
    in-process server."""
    return ModelRegistry.load()


class ServerThread:
    """A server running on its own event loop in a background thread."""

    def __init__(self, config: ServerConfig, registry: ModelRegistry, telemetry: Telemetry | None = None,
                 address: str = "127.0.0.1:0"):
        self.config, self.registry, self.telemetry, self.address = config, registry, telemetry, address
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = None
        self.port = None

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> ServerThread:
        async def start():
            server, port = create_server(self.address, self.config, self.registry, self.telemetry)
            await server.start()
            return server, port

        self.server, self.port = self._run(start())
        self.address = f"127.0.0.1:{self.port}"
        return self

    def stop(self, grace: float = 0) -> None:
        if self.server is not None:
            self._run(self.server.stop(grace))
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


LOG_BACKENDS = ("sqlite", "nats")


@dataclass
class ChannelLog:
    """Which channel log a test's servers use: ``kind`` "sqlite", or "nats" at ``url``."""

    kind: str
    url: str = ""

    def config(self, data_dir: Path, prefix: str | None = None, **settings) -> ServerConfig:
        """A server's settings on this log; on JetStream, under ``prefix`` (default: a new one,
        so that no two servers of a run share channels unless a test means them to)."""
        if self.kind == "sqlite":
            return ServerConfig(data_dir=data_dir, **settings)
        return ServerConfig(data_dir=data_dir, log=self.url, nats_prefix=prefix or fresh_prefix(), **settings)

    def args(self, prefix: str | None = None) -> tuple[str, ...]:
        """``rvqstream serve`` arguments for this log (as ``config``)."""
        if self.kind == "sqlite":
            return ()
        return ("--log", self.url, "--nats-prefix", prefix or fresh_prefix())


def fresh_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("channel_suite") and "channel_log" in metafunc.fixturenames:
        metafunc.parametrize("channel_log", LOG_BACKENDS, indirect=True, scope="module")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory) -> NatsServer:
    """One real nats-server with JetStream for the whole run."""
    srv = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel_log(request) -> ChannelLog:
    """The channel log of this module's servers: SQLite, unless the module is a ``channel_suite``
    (then each backend in turn)."""
    kind = getattr(request, "param", "sqlite")
    return ChannelLog(kind, request.getfixturevalue("nats_server").url if kind == "nats" else "")


@pytest.fixture
def server_config(tmp_path, channel_log) -> ServerConfig:
    return channel_log.config(tmp_path / "data", max_message_bytes=64 << 10)


@pytest.fixture
def server(server_config, registry):
    srv = ServerThread(server_config, registry).start()
    yield srv
    srv.close()


@pytest.fixture
def channel(server):
    """A blocking gRPC channel to ``server``, for tests of the raw wire contract."""
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "model-cache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``rvqstream serve`` as a child process on a fixed port, so it can be killed and restarted."""

    def __init__(self, data_dir: Path, port: int | None = None, args: tuple[str, ...] = ()):
        self.data_dir, self.port, self.args = data_dir, port or free_port(), args
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.log = self.data_dir.parent / f"server-{self.port}.log"
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rvqstream.cli", "serve", "--listen", self.target,
                 "--data-dir", str(self.data_dir), "--grace-s", "1", *self.args],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("server did not come up")
                time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, then wait -> (exit code, the server's output)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.log.read_text()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def server_process(tmp_path, channel_log):
    proc = ServerProcess(tmp_path / "proc-data", args=channel_log.args())
    yield proc
    proc.close()


class Proxy:
    """A TCP proxy on loopback in its own thread: ``drop()`` cuts every connection through it (a
    flaky link), ``target`` is where clients connect."""

    def __init__(self, upstream: str):
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._writers: list[asyncio.StreamWriter] = []
        self.drops = 0

        async def start():
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            return self._server.sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.target = f"127.0.0.1:{self.port}"

    async def _handle(self, cr, cw) -> None:
        try:
            sr, sw = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            cw.close()
            return
        self._writers += [cw, sw]
        await asyncio.gather(self._pipe(cr, sw), self._pipe(sr, cw), return_exceptions=True)

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def drop(self) -> None:
        async def cut():
            for w in self._writers:
                w.transport.abort()
            self._writers.clear()
        asyncio.run_coroutine_threadsafe(cut(), self.loop).result(10)
        self.drops += 1

    def close(self) -> None:
        self.drop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


@pytest.fixture(scope="session")
def builtin_messages() -> list[dict]:
    """Real prose available offline, for training tiny models: the docstrings of the standard
    library's builtins, paragraphs of 24-600 bytes, in two sources."""
    import builtins
    out = []
    for name in sorted(dir(builtins)):
        for para in (getattr(builtins, name).__doc__ or "").split("\n\n"):
            if 24 <= len(para.encode()) <= 600:
                out.append({"text": para, "source": "builtins" if len(out) % 2 else "builtins2"})
    return out
