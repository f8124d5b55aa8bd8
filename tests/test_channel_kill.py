"""A real ``rvqstream serve`` process killed with SIGKILL while a publisher and a subscriber are
connected: after restarts, the subscriber has every message exactly once, in order."""

from __future__ import annotations

import threading

import pytest

from rvqstream.client import Client

pytestmark = pytest.mark.channel_suite   # on SQLite and on JetStream (conftest.py)

N_MESSAGES = 120
FIRST_BATCH = 10
KILL_AFTER_SENT = (40, 80)   # messages handed to the publisher when the server is killed


def test_sigkill_and_restart_lose_and_duplicate_nothing(server_process, tmp_path):
    messages = [f"durable message {i} — {'x' * (i % 17)}" for i in range(N_MESSAGES)]
    server_process.start()
    with Client(server_process.target, cache_dir=tmp_path / "pub-cache") as c:
        published = c.publish("durable", messages[:FIRST_BATCH])   # the channel exists from here on
    sent = threading.Semaphore(0)
    received = []

    def produce():
        def source():
            for text in messages[FIRST_BATCH:]:
                yield text
                sent.release()

        with Client(server_process.target, cache_dir=tmp_path / "pub-cache", reconnect_timeout_s=120) as c:
            published.extend(c.publish("durable", source()))

    def consume():
        with Client(server_process.target, cache_dir=tmp_path / "sub-cache", reconnect_timeout_s=120) as c:
            for m in c.subscribe("durable"):
                received.append(m)
                if len(received) == N_MESSAGES:
                    return

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    count = FIRST_BATCH
    for kill_at in KILL_AFTER_SENT:
        while count < kill_at:
            assert sent.acquire(timeout=120)
            count += 1
        server_process.kill()
        server_process.start()
    for t in threads:
        t.join(240)
    assert not any(t.is_alive() for t in threads)
    assert published == list(range(N_MESSAGES))
    assert [m.offset for m in received] == list(range(N_MESSAGES))
    assert [m.text for m in received] == messages


def test_sigterm_shuts_down_gracefully(server_process, tmp_path):
    server_process.start()
    with Client(server_process.target, cache_dir=tmp_path / "cache") as c:
        assert c.publish("before-term", ["kept"]) == [0]
    code, out = server_process.terminate()
    assert code == 0 and "shutting down" in out
    server_process.start()                               # the log survives a clean restart too
    with Client(server_process.target, cache_dir=tmp_path / "cache") as c:
        assert next(c.subscribe("before-term")).text == "kept"
