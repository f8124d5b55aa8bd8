"""Network addresses as the server and the SDK read them: ``HOST:PORT``, ``[V6]:PORT``, and the
SDK's targets of several server replicas."""

from __future__ import annotations

import ipaddress
import socket

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


ROUND_ROBIN = ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}')


def addresses_of(target: str | list[str] | tuple[str, ...]) -> list[str]:
    """The ``HOST:PORT`` entries of a target: one, several (a list, or comma-separated), or a
    ``dns:///NAME:PORT`` name (one entry)."""
    entries = [target] if isinstance(target, str) and target.startswith("dns:") else (
        target.split(",") if isinstance(target, str) else list(target))
    entries = [e.strip() for e in entries]
    if not entries or not all(entries):
        raise ValueError(f"target {target!r} names no address")
    return entries


def channel_target(target: str | list[str] | tuple[str, ...]) -> tuple[str, list[tuple[str, str]]]:
    """(the gRPC target, channel options) for ``target``: one ``HOST:PORT`` as it is; several
    server replicas (a list or comma-separated ``HOST:PORT``s, names resolved once, here) or a
    ``dns:///NAME:PORT`` whose name has an address per replica, balanced round-robin: calls go to
    the replicas that are up. ``ValueError`` for a bad entry or a name that does not resolve."""
    entries = addresses_of(target)
    if entries[0].startswith("dns:"):
        return entries[0], [ROUND_ROBIN]
    if len(entries) == 1:
        return entries[0], []
    ips = []
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"target entry {entry!r} is not HOST:PORT")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ips.append((ipaddress.ip_address(host), int(port)))
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            except socket.gaierror as e:
                raise ValueError(f"target entry {entry!r}: {e}") from None
            found = {ipaddress.ip_address(info[4][0]) for info in infos}
            ipv4 = sorted(ip for ip in found if ip.version == 4)   # a name with both families: IPv4
            ips += [(ip, int(port)) for ip in (ipv4 or sorted(found))]
    versions = {ip.version for ip, _ in ips}
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in ips), [ROUND_ROBIN]
    if versions == {6}:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in ips), [ROUND_ROBIN]
    raise ValueError(f"target {target!r} mixes IPv4 and IPv6 addresses: list one family")
