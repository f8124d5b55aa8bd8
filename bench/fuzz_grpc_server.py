"""The gRPC fuzzer's server (bench/fuzz_grpc.py): ``rvqstream serve`` as a child process with an
access file (an admin token and one that may only subscribe), its settings (``SERVE_ARGS``), and
what is read of it from outside: its RSS, whether it is alive, and the tracebacks in its log.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rvqstream.server.access import new_token, token_entry

MAX_FIELD = 64 << 10    # the server's --max-message-bytes here: larger fields must be refused
SERVE_ARGS = ("--max-message-bytes", str(MAX_FIELD), "--stream-timeout-s", "2", "--grace-s", "1")


def access_file(path: Path) -> dict[str, str]:
    """Writes an access file: an admin token and one that may only subscribe to fuzz/* -> tokens."""
    tokens = {"admin": new_token(), "reader": new_token()}
    path.write_text(token_entry("fuzz-admin", tokens["admin"], ["*"], ["*"], True)
                    + token_entry("fuzz-reader", tokens["reader"], [], ["fuzz/*"], False))
    return tokens


class Server:
    """``rvqstream serve`` as a child process on a free loopback port, with an access file."""

    def __init__(self, directory: Path):
        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.target = f"127.0.0.1:{s.getsockname()[1]}"
        self.tokens = access_file(directory / "access.toml")
        self.log = directory / "server.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rvqstream.cli", "serve", "--listen", self.target, "--data-dir",
                 str(directory / "data"), "--auth-tokens", str(directory / "access.toml"), *SERVE_ARGS],
                stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
                try:
                    if (await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not come up")
                await asyncio.sleep(0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (exists and is no zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def server_tracebacks(log: Path) -> dict[str, dict]:
    """The server log's tracebacks, grouped by their last line -> count, the line logged before the
    first one, its traceback, and the correlation ids (of INTERNAL statuses) they were logged with."""
    out: dict[str, dict] = {}
    lines = log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("Traceback"):
            continue
        j = i + 1
        while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
            j += 1
        last = lines[j] if j < len(lines) else "?"
        header = lines[i - 1] if i else ""
        entry = out.setdefault(last[:300], {"count": 0, "logged": header[:300], "correlation_ids": [],
                                            "traceback": "\n".join(lines[i:j + 1])[-4000:]})
        entry["count"] += 1
        ids = re.findall(r"correlation id ([0-9a-f]+)", header)
        if ids and len(entry["correlation_ids"]) < 20:
            entry["correlation_ids"].append(ids[0])
    return out
