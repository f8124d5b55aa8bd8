"""Resume benchmark: a publisher and a subscriber stay connected (through the SDK's own reconnect)
while ``rvqstream serve`` is killed with SIGKILL and restarted several times; afterwards every
published message must have reached the subscriber exactly once, in order, and the log must hold
each message once.

``--streamed``: the producer streams each message word by word (``Client.open_stream``), so the
kills land inside messages; two followers (``Client.follow``), one from offset 0 and one that
joins from the middle once the channel has reached it, must each end with every message's text
exactly as written: characters lost and duplicated are counted per message.

Run: ``python bench/resume_kill.py [--messages 1000] [--kills 3]``,
``python bench/resume_kill.py --streamed [--messages 240] [--kills 3]``
"""

from __future__ import annotations

import argparse
import difflib
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


STREAM_WORDS = ["the", "device", "streams", "what", "it", "hears", "as", "it", "hears", "it,", "and", "a",
                "follower", "that", "lost", "its", "link", "resumes", "at", "the", "frame", "where", "it",
                "stopped:", "ünïcödé,", "日本語", "and", "🎉", "too"]


def char_errors(written: str, got: str) -> tuple[int, int]:
    """(characters of ``written`` missing from ``got``, characters of ``got`` beyond a match)."""
    if written == got:
        return 0, 0
    matched = sum(b.size for b in difflib.SequenceMatcher(None, written, got, autojunk=False).get_matching_blocks())
    return len(written) - matched, len(got) - matched


def streamed(args: argparse.Namespace) -> dict:
    """The --streamed run (see the module docstring) -> its results."""
    texts = [f"message {i:04d}: " + " ".join(STREAM_WORDS[: 8 + i % (len(STREAM_WORDS) - 8)]) + "."
             for i in range(args.messages)]
    kill_points = [args.messages * (k + 1) // (args.kills + 1) for k in range(args.kills)]
    middle = args.messages // 2
    with tempfile.TemporaryDirectory(prefix="rvqstream-resume-") as tmp:
        tmp_dir = Path(tmp)
        server = Server(tmp_dir / "data", free_port())
        server.start()
        with Client(server.target, cache_dir=tmp_dir / "cache") as c:
            c.publish("live", ["opening"])                    # the channel exists from here on
        state = {"started": 0, "offsets": [], "mid_message_kills": 0}
        started = threading.Condition()
        got: dict[str, dict[int, str]] = {"from 0": {}, "from the middle": {}}
        aborted: dict[str, list[int]] = {"from 0": [], "from the middle": []}
        errors: list[str] = []

        def produce():
            try:
                with Client(server.target, cache_dir=tmp_dir / "cache", reconnect_timeout_s=120) as c, \
                        c.open_stream("live", max_delay_ms=50) as w:
                    for i, text in enumerate(texts):
                        with started:
                            state["started"] = i + 1
                            started.notify_all()
                        for k, word in enumerate(text.split(" ")):
                            w.write(word if k == 0 else " " + word)
                            time.sleep(args.word_delay_ms / 1000)
                        state["offsets"].append(w.end_message())
            except RvqstreamError as e:
                errors.append(f"producer: {e}")

        def follow(name: str, from_offset: int):
            try:
                with Client(server.target, cache_dir=tmp_dir / "cache", reconnect_timeout_s=120) as c:
                    for d in c.follow("live", from_offset):
                        if d.offset == 0:
                            continue
                        got[name][d.offset] = got[name].get(d.offset, "") + d.text
                        if d.aborted:
                            aborted[name].append(d.offset)
                        if d.done and d.offset == args.messages:
                            return
            except RvqstreamError as e:
                errors.append(f"follower {name}: {e}")

        t0 = time.monotonic()
        threads = [threading.Thread(target=produce), threading.Thread(target=follow, args=("from 0", 0))]
        for t in threads:
            t.start()
        for point in kill_points:
            with started:
                started.wait_for(lambda p=point: state["started"] > p, timeout=600)
            words = len(texts[point].split(" "))
            time.sleep(words * args.word_delay_ms / 2000)     # about half way through the message
            state["mid_message_kills"] += int(len(state["offsets"]) < state["started"])
            server.kill()
            print(f"SIGKILL while message {state['started']} was being written", flush=True)
            server.start()
            if point == kill_points[0]:
                with started:
                    started.wait_for(lambda: len(state["offsets"]) > middle, timeout=600)
                late = threading.Thread(target=follow, args=("from the middle", middle + 1))
                late.start()
                threads.append(late)
        for t in threads:
            t.join(900)
        elapsed = time.monotonic() - t0
        server.kill()
    per_follower = {}
    for name, first in (("from 0", 1), ("from the middle", middle + 1)):
        lost = dup = wrong = 0
        for i in range(first, args.messages + 1):
            miss, extra = char_errors(texts[i - 1], got[name].get(i, ""))
            lost, dup, wrong = lost + miss, dup + extra, wrong + (miss + extra > 0)
        per_follower[name] = {"first_offset": first, "messages": args.messages + 1 - first,
                              "characters_lost": lost, "characters_duplicated": dup,
                              "messages_not_byte_exact": wrong, "aborted": aborted[name]}
    return {
        "command": " ".join(["python", "bench/resume_kill.py", *sys.argv[1:]]),
        "mode": "streamed", "messages": args.messages, "characters": sum(len(t) for t in texts),
        "kills": args.kills, "kills_inside_a_message": state["mid_message_kills"],
        "seconds": round(elapsed, 1),
        "acked_offsets_dense": state["offsets"] == list(range(1, args.messages + 1)),
        "followers": per_follower, "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=None, help="default 1000, with --streamed 240")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--streamed", action="store_true", help="stream each message word by word and follow it")
    ap.add_argument("--word-delay-ms", type=float, default=5.0, help="with --streamed: pause after each word")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/resume_kill[_streamed].json")
    args = ap.parse_args()
    name = "resume_kill_streamed.json" if args.streamed else "resume_kill.json"
    args.out = args.out or ROOT / "bench" / "results" / name
    if args.streamed:
        args.messages = args.messages or 240
        result = streamed(args)
        print(json.dumps(result, indent=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        return
    args.messages = args.messages or 1000
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
