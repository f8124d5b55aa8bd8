"""How the SDK reaches a server: plaintext or TLS (optionally with a client certificate, mTLS), and
a bearer token sent with every call.

    Client("rvq.example.com:443", tls=True, token=os.environ["RVQSTREAM_TOKEN"])
    Client("10.0.0.5:50051", tls=TLSConfig(ca="ca.pem", cert="device.pem", key="device.key"))

A token travels in the ``authorization`` metadata; it is refused over plaintext to anything but a
loopback address, where anyone on the path could read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from rvqstream.addresses import addresses_of, channel_target, is_loopback
from rvqstream.client.errors import RvqstreamError

PEM = Path | str | bytes


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings: ``ca`` the PEM roots that sign the server's certificate (None: the system's);
    ``cert`` and ``key`` a client certificate chain and its key (mTLS); ``server_name`` the name
    the server's certificate must carry, when not the target's host."""

    ca: PEM | None = None
    cert: PEM | None = None
    key: PEM | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise RvqstreamError("INVALID_ARGUMENT", "a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(root_certificates=_pem(self.ca), private_key=_pem(self.key),
                                            certificate_chain=_pem(self.cert))


def _pem(value: PEM | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise RvqstreamError("INVALID_ARGUMENT", f"cannot read {value}: {e.strerror}") from None


def open_channel(target: str | list[str], tls: bool | TLSConfig, token: str | None,
                 options: list[tuple[str, object]]) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target`` (one server, or replicas: ``addresses.channel_target``):
    TLS when ``tls`` (True: system roots), and ``token`` as a bearer token on every call."""
    config = TLSConfig() if tls is True else tls or None
    try:
        entries = addresses_of(target)
        target, balanced = channel_target(target)
    except ValueError as e:
        raise RvqstreamError("INVALID_ARGUMENT", str(e)) from None
    options = [*options, *balanced]
    if token is not None and config is None and not all(is_loopback(e) for e in entries):
        raise RvqstreamError("INVALID_ARGUMENT", f"refusing to send a token in plaintext to {target}: "
                             "use tls=True or a TLSConfig")
    interceptors = bearer_interceptors(token) if token is not None else None
    if config is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    if config.server_name:
        options = [*options, ("grpc.ssl_target_name_override", config.server_name)]
    return grpc.aio.secure_channel(target, config.credentials(), options=options,
                                   interceptors=interceptors)


def _with_token(details: grpc.aio.ClientCallDetails, header: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), header)
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                      details.wait_for_ready)


class _Bearer:
    """Adds ``authorization: Bearer <token>`` to a call's metadata."""

    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")


class _BearerUnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(_with_token(details, self.header), request)


class _BearerUnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(_with_token(details, self.header), request)


class _BearerStreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, requests):
        return await continuation(_with_token(details, self.header), requests)


class _BearerStreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, requests):
        return await continuation(_with_token(details, self.header), requests)


def bearer_interceptors(token: str) -> list:
    """One interceptor per call kind (grpc.aio files each interceptor under one kind only)."""
    return [kind(token) for kind in (_BearerUnaryUnary, _BearerUnaryStream, _BearerStreamUnary,
                                     _BearerStreamStream)]
