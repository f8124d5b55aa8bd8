"""Server configuration from flags and ``RVQSTREAM_*`` environment variables (flags win).

Every setting has a default, so ``rvqstream serve`` alone works: it listens on 127.0.0.1:50051
and keeps channel logs in ./rvqstream-data.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass
class ServerConfig:
    """Settings of one server process (times in ms, sizes in bytes)."""

    listen: str = field(default="127.0.0.1:50051", metadata={"help": "HOST:PORT to listen on"})
    health_listen: str = field(default="", metadata={
        "help": "HOST:PORT of a second listener that serves only grpc.health.v1, in plaintext on any "
                "address (for probes that speak no TLS, e.g. the kubelet's gRPC probe); empty: none"})
    data_dir: Path = field(default=Path("rvqstream-data"), metadata={
        "help": "channel log directory (with --log: where this replica keeps its rebuildable view of "
                "the JetStream log)"})
    log: str = field(default="", metadata={
        "help": "channel log engine: empty for the embedded SQLite log in --data-dir, or "
                "nats://HOST:PORT[,HOST:PORT...] for NATS JetStream shared by any number of replicas"})
    nats_prefix: str = field(default="rvq", metadata={
        "help": "with --log: prefix of this deployment's JetStream streams and subjects (1-32 "
                "letters, digits or -)"})
    nats_replicas: int = field(default=1, metadata={
        "help": "with --log: replicas of each JetStream stream this server creates (3 in a cluster)"})
    nats_credentials: str = field(default="", metadata={
        "help": "with --log: NATS credentials file (.creds) to connect with"})
    models: str = field(default="", metadata={
        "help": "extra model bundle directories, comma-separated (the shipped bundle is the default)"})
    max_delay_ms: int = field(default=200, metadata={
        "help": "default latency budget of an encode stream: text arrival to frame emission"})
    max_queue_delay_ms: float = field(default=2.0, metadata={
        "help": "longest wait of the batching scheduler for more work before it runs a batch"})
    max_batch: int = field(default=64, metadata={"help": "most stream work items in one batch"})
    workers: int = field(default=2, metadata={"help": "threads that run model work"})
    device: str = field(default="cpu", metadata={
        "help": "execution provider of the integer model: cpu, or cuda (needs the gpu extra; the "
                "same bitstreams either way)", "choices": ("cpu", "cuda")})
    max_message_bytes: int = field(default=1 << 20, metadata={
        "help": "largest message (a streamed one in all), text chunk or blob a request may carry"})
    stream_buffer_bytes: int = field(default=1 << 16, metadata={
        "help": "text an encode stream buffers before it stops reading (backpressure)"})
    stream_queue_frames: int = field(default=256, metadata={
        "help": "frames an encode stream queues for a slow reader before it stops encoding"})
    subscribe_page: int = field(default=64, metadata={
        "help": "log entries a subscriber reads at once (bounds its memory)"})
    subscribe_page_bytes: int = field(default=1 << 20, metadata={
        "help": "bytes of blobs or frame batches a subscriber reads at once (bounds its memory)"})
    stream_timeout_s: float = field(default=60.0, metadata={
        "help": "seconds a streamed message waits for its producer to come back before it is "
                "closed as aborted"})
    tls_cert: str = field(default="", metadata={"help": "PEM certificate chain: serve TLS"})
    tls_key: str = field(default="", metadata={"help": "PEM private key of --tls-cert"})
    tls_client_ca: str = field(default="", metadata={
        "help": "PEM CA certificates: require client certificates they signed (mTLS)"})
    insecure: bool = field(default=False, metadata={
        "help": "allow plaintext on a non-loopback listen address"})
    auth_tokens: str = field(default="", metadata={
        "help": "access file (TOML) of hashed tokens, client subjects and their permissions; "
                "reloaded on SIGHUP (unset: no authentication)"})
    reflection: bool = field(default=False, metadata={
        "help": "serve gRPC reflection (admin only when an access file is set)"})
    max_concurrent_rpcs: int = field(default=4096, metadata={
        "help": "calls the server runs at once, all clients together"})
    max_calls_per_client: int = field(default=1024, metadata={
        "help": "calls one client (an identity, or an address without one) may have open"})
    max_streams_per_connection: int = field(default=1024, metadata={
        "help": "HTTP/2 streams one connection may open at once"})
    connection_idle_s: float = field(default=900.0, metadata={
        "help": "seconds a connection with no call open stays up"})
    connection_age_s: float = field(default=3600.0, metadata={
        "help": "seconds after which a connection is asked to go away (clients reconnect and resume)"})
    connection_age_grace_s: float = field(default=60.0, metadata={
        "help": "seconds the calls of an aged connection get to finish"})
    unary_workers: int = field(default=1, metadata={
        "help": "threads that run unary Compress/Decompress (apart from the stream workers)"})
    unary_queue: int = field(default=32, metadata={
        "help": "unary calls that may wait for a unary worker; more are refused"})
    max_call_s: float = field(default=30.0, metadata={
        "help": "longest model work of one unary call, in seconds, whatever its deadline"})
    retention_age_s: float = field(default=0.0, metadata={
        "help": "channel messages older than this are removed (0: kept)"})
    retention_bytes: int = field(default=0, metadata={
        "help": "a channel keeps at most this many bytes of messages, oldest removed first (0: all)"})
    max_log_bytes: int = field(default=0, metadata={
        "help": "largest the channel log file may grow (0: as the disk allows)"})
    min_free_bytes: int = field(default=256 << 20, metadata={
        "help": "publishing is refused while the data directory's disk has less free space"})
    message_codes: bool = field(default=True, metadata={
        "help": "give every channel message a code at publish (Search, SyncCodes, near-duplicates); "
                "about half again a message's CPU time at publish"})
    index_codes: int = field(default=4_000_000, metadata={
        "help": "message codes the search indexes hold in memory over all channels (~26 bytes each)"})
    grace_s: float = field(default=5.0, metadata={"help": "seconds in-flight RPCs get at shutdown"})
    telemetry: bool = field(default=False, metadata={
        "help": "OpenTelemetry traces and metrics, exporters from the OTEL_* variables"})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> ServerConfig:
        """Defaults, then ``RVQSTREAM_<NAME>`` variables, then ``overrides``."""
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(f"RVQSTREAM_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f"RVQSTREAM_{f.name.upper()}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        for f in fields(cls):
            choices = f.metadata.get("choices")
            if choices and getattr(config, f.name) not in choices:
                raise SystemExit(f"{f.name}: must be one of {', '.join(choices)}")
        return config

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds one ``--name`` flag per setting (default None: the env var or default applies)."""
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            env = f"RVQSTREAM_{f.name.upper()}"
            default = getattr(cls(), f.name)
            help_text = f"{f.metadata['help']} (env {env}, default {default})"
            if f.type == "bool":
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                    help=help_text)
            else:
                parser.add_argument(flag, type=_PARSERS[f.type], default=None, help=help_text,
                                    choices=f.metadata.get("choices"))

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: dict[str, str] | None = None) -> ServerConfig:
        return cls.from_env(env, **{f.name: getattr(args, f.name, None) for f in fields(cls)})

    def model_dirs(self) -> list[Path]:
        return [Path(p) for p in self.models.split(",") if p.strip()]


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


_PARSERS = {"str": str, "int": int, "float": float, "bool": _bool, "Path": Path}


def _parse(type_name: str, raw: str, name: str):
    try:
        return _PARSERS[type_name](raw)
    except ValueError as e:
        raise SystemExit(f"{name}: {e}") from None
