"""Network addresses as the server and the SDK read them: ``HOST:PORT``, ``[V6]:PORT``."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def host_of(address: str) -> str:
    """``HOST:PORT`` or ``[V6]:PORT`` (an optional ``dns:///`` or ``ipv4:`` scheme before it) ->
    the host, brackets removed."""
    for scheme in ("dns:///", "ipv4:", "ipv6:"):
        address = address.removeprefix(scheme)
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(address: str) -> bool:
    """Whether ``address`` names this machine only (127.0.0.0/8, ::1, localhost, a unix socket)."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = host_of(address)
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
