"""Resume benchmark: a publisher and a subscriber stay connected (through the SDK's own reconnect)
while ``rvqstream serve`` is killed with SIGKILL and restarted several times; afterwards every
published message must have reached the subscriber exactly once, in order, and the log must hold
each message once.

Run: ``python bench/resume_kill.py [--messages 1000] [--kills 3]``
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from rvqstream.client import Client, RvqstreamError

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, port: int):
        self.data_dir, self.port, self.proc = data_dir, port, None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "rvqstream.cli", "serve", "--listen", self.target,
                                      "--data-dir", str(self.data_dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Client(self.target, cache_dir=self.data_dir / "probe-cache", reconnect_timeout_s=0) as c:
            for _ in range(600):
                try:
                    c.models()
                    return
                except RvqstreamError:
                    time.sleep(0.05)
        raise SystemExit("server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "resume_kill.json")
    args = ap.parse_args()
    messages = [f"message {i:05d}: the device syncs what it missed, no more, no less" for i in range(args.messages)]
    kill_points = [args.messages * (k + 1) // (args.kills + 1) for k in range(args.kills)]

    with tempfile.TemporaryDirectory(prefix="rvqstream-resume-") as tmp:
        tmp_dir = Path(tmp)
        server = Server(tmp_dir / "data", free_port())
        server.start()
        with Client(server.target, cache_dir=tmp_dir / "cache") as c:
            offsets = c.publish("bench", messages[:1])           # the channel exists from here on
        handed = threading.Semaphore(0)
        received, errors = [], []

        def produce():
            def source():
                for text in messages[1:]:
                    yield text
                    handed.release()
            try:
                with Client(server.target, cache_dir=tmp_dir / "cache", reconnect_timeout_s=120) as c:
                    offsets.extend(c.publish("bench", source()))
            except RvqstreamError as e:
                errors.append(f"publisher: {e}")

        def consume():
            try:
                with Client(server.target, cache_dir=tmp_dir / "cache", reconnect_timeout_s=120) as c:
                    for m in c.subscribe("bench"):
                        received.append((m.offset, m.text))
                        if len(received) >= len(messages) and m.offset >= len(messages) - 1:
                            return
            except RvqstreamError as e:
                errors.append(f"subscriber: {e}")

        t0 = time.monotonic()
        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        count = 1
        for point in kill_points:
            while count < point:
                handed.acquire()
                count += 1
            server.kill()
            print(f"SIGKILL after {count} messages handed to the publisher", flush=True)
            server.start()
        for t in threads:
            t.join(600)
        elapsed = time.monotonic() - t0

        with Client(server.target, cache_dir=tmp_dir / "cache") as c:   # what the log holds now
            log = []
            for m in c.subscribe("bench"):
                log.append(m.text)
                if len(log) == len(messages):
                    break
            try:
                c.fetch("bench", len(messages))
                extra = True           # a message past the last published one: something was stored twice
            except RvqstreamError:
                extra = False
        server.kill()

    got_texts = [t for _, t in received]
    counts = Counter(got_texts)
    result = {
        "command": " ".join(["python", "bench/resume_kill.py", *sys.argv[1:]]),
        "messages": len(messages), "kills": args.kills, "seconds": round(elapsed, 1),
        "acked_offsets_dense": offsets == list(range(len(messages))),
        "received": len(received),
        "lost": sum(1 for t in messages if t not in counts),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "in_order": [o for o, _ in received] == list(range(len(received))) and got_texts == messages[:len(got_texts)],
        "log_holds_each_once": log == messages and not extra,
        "errors": errors,
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
