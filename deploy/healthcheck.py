"""gRPC health check (``grpc.health.v1``) of an rvqstream server, for container health checks.

    python healthcheck.py [--target HOST:PORT] [--service NAME] [--timeout S]
                          [--tls-ca FILE] [--tls-server-name NAME] [--tls-cert FILE --tls-key FILE]

Exit status 0 when the server answers SERVING for ``--service`` ("" is the whole server;
"rvqstream.v1.CodecService" and "rvqstream.v1.ChannelService" are its services), 1 otherwise: not
serving (it is draining at shutdown), unknown service, unreachable, refused or timed out.

Defaults come from the environment, so the image's HEALTHCHECK needs no arguments: the target is
127.0.0.1 at the port of ``RVQSTREAM_LISTEN`` (the server's own setting; 50051 without it). TLS
is used when ``--tls-ca`` is given or the server serves TLS (``RVQSTREAM_TLS_CERT`` is set); the
``HEALTHCHECK_TLS_CA``, ``HEALTHCHECK_TLS_SERVER_NAME``, ``HEALTHCHECK_TLS_CERT`` and
``HEALTHCHECK_TLS_KEY`` variables stand for the flags. Health checks need no token.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def default_target(env: dict[str, str]) -> str:
    """127.0.0.1 at the port the server listens on (``RVQSTREAM_LISTEN``, default 50051)."""
    listen = env.get("RVQSTREAM_LISTEN") or "127.0.0.1:50051"
    return f"127.0.0.1:{listen.rsplit(':', 1)[-1]}"


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> argparse.Namespace:
    """The health check's settings: flags, then ``HEALTHCHECK_*`` variables, then defaults."""
    env = dict(os.environ) if env is None else env
    p = argparse.ArgumentParser(description="gRPC health check of an rvqstream server")
    p.add_argument("--target", default=default_target(env), help="HOST:PORT of the server")
    p.add_argument("--service", default="", help='service to check ("": the whole server)')
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    p.add_argument("--tls-ca", default=env.get("HEALTHCHECK_TLS_CA"),
                   help="PEM roots that sign the server's certificate (TLS)")
    p.add_argument("--tls-server-name", default=env.get("HEALTHCHECK_TLS_SERVER_NAME"),
                   help="the name the server's certificate carries")
    p.add_argument("--tls-cert", default=env.get("HEALTHCHECK_TLS_CERT"),
                   help="client certificate chain (when the server requires one)")
    p.add_argument("--tls-key", default=env.get("HEALTHCHECK_TLS_KEY"), help="its private key")
    args = p.parse_args(argv)
    args.tls = bool(args.tls_ca or args.tls_cert or env.get("RVQSTREAM_TLS_CERT"))
    if (args.tls_cert is None) != (args.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    return args


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A plaintext or TLS channel to ``args.target``."""
    if not args.tls:
        return grpc.insecure_channel(args.target)

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    creds = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.secure_channel(args.target, creds, options=options)


def check(args: argparse.Namespace) -> tuple[bool, str]:
    """(whether the server answered SERVING, what it answered or why it did not)."""
    try:
        with open_channel(args) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as e:
        return False, f"{e.code().name}: {e.details()}"
    except OSError as e:
        return False, str(e)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    """Checks once; prints the answer; 0 when SERVING."""
    args = parse_args(argv)
    ok, answer = check(args)
    print(f"{args.target} {args.service or '(server)'}: {answer}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
