"""Transport security of the listening port: TLS, mTLS, and the rule that plaintext stays on
loopback.

``--tls-cert``/``--tls-key`` (PEM files) turn on TLS; ``--tls-client-ca`` also requires every
client to present a certificate that CA signed (mTLS), whose subject is then the client's
identity (gate.py). Without TLS the server listens only on a loopback address unless
``--insecure`` says plaintext on the network is meant.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from rvqstream.addresses import is_loopback


class ListenError(ValueError):
    """The listen address and the transport settings do not go together."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ListenError(f"cannot read the {what} {path}: {e.strerror}") from None


def server_credentials(cert: str, key: str, client_ca: str) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files (None when ``cert`` and ``key`` are both empty); with
    ``client_ca``, clients must present a certificate it signed."""
    if not cert and not key:
        if client_ca:
            raise ListenError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (cert and key):
        raise ListenError("TLS needs both --tls-cert and --tls-key")
    pair = (_read(key, "TLS key"), _read(cert, "TLS certificate"))
    if not client_ca:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials([pair], root_certificates=_read(client_ca, "client CA"),
                                       require_client_auth=True)


def check_listen(address: str, credentials: grpc.ServerCredentials | None, insecure: bool) -> None:
    """``ListenError`` when ``address`` is not loopback, there is no TLS and ``insecure`` is off."""
    if credentials is None and not insecure and not is_loopback(address):
        raise ListenError(f"refusing plaintext on {address}, which is not a loopback address: give "
                          "--tls-cert and --tls-key, or --insecure to serve plaintext on the network")
