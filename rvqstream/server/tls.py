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


class ServerTLS:
    """The server's certificate, key and client CA, read from their PEM files again by
    ``reload()`` (on SIGHUP): new connections then use the new files, open ones keep theirs."""

    def __init__(self, cert: str, key: str, client_ca: str):
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._config = self._read()
        self._fresh = False            # a reloaded configuration not yet handed to gRPC

    def _read(self) -> grpc.ServerCertificateConfiguration:
        pair = (_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
        roots = _read(self.client_ca, "client CA") if self.client_ca else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=roots)

    def reload(self) -> None:
        """Reads the files again; ``ListenError`` (the old ones stay in use) when one is unreadable."""
        self._config, self._fresh = self._read(), True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC asks before each handshake: a new configuration once, else None (keep the last)."""
        if not self._fresh:
            return None
        self._fresh = False
        return self._config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._config, self._fetch,
                                                   require_client_authentication=bool(self.client_ca))


def server_tls(cert: str, key: str, client_ca: str) -> ServerTLS | None:
    """The TLS settings of PEM files (None when ``cert`` and ``key`` are both empty); with
    ``client_ca``, clients must present a certificate it signed."""
    if not cert and not key:
        if client_ca:
            raise ListenError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (cert and key):
        raise ListenError("TLS needs both --tls-cert and --tls-key")
    return ServerTLS(cert, key, client_ca)


def check_listen(address: str, tls: ServerTLS | None, insecure: bool) -> None:
    """``ListenError`` when ``address`` is not loopback, there is no TLS and ``insecure`` is off."""
    if tls is None and not insecure and not is_loopback(address):
        raise ListenError(f"refusing plaintext on {address}, which is not a loopback address: give "
                          "--tls-cert and --tls-key, or --insecure to serve plaintext on the network")
