"""Faults on the shared JetStream log: a three-node NATS cluster (streams of three replicas,
``sync_interval: always``) behind two ``rvqstream serve`` processes. Whole and streamed messages are
published through both replicas while followers read through both, from offset 0 and from the
middle; one NATS node and one rvqstream replica are SIGKILLed and restarted, three times. Every
acknowledged message is in the log once, offsets are dense, and every follower gets every message
byte for byte."""

from __future__ import annotations

import itertools
import threading
import time

from conftest import ServerProcess, fresh_prefix
from nats_servers import NatsCluster

from rvqstream.client import Client

WHOLE = 800                  # published whole, in batches
STREAMED = 200               # streamed, each in three writes
MIDDLE = 500                 # the second follower starts here
ROUNDS = 3
ROUND_AT = (160, 360, 560)   # whole messages published when each round of kills starts
CHANNEL = "faults"


def whole_text(i: int) -> str:
    return f"whole message {i}: " + "the quick brown fox jumps over the lazy dog " * (i % 4)


def streamed_parts(j: int) -> list[str]:
    return [f"streamed message {j}, ", "written in pieces ", f"as an answer is generated ({'·' * (j % 7)})"]


def test_killed_nats_nodes_and_replicas_lose_and_duplicate_nothing(tmp_path):
    cluster = NatsCluster(tmp_path / "nats").start()
    args = ("--log", cluster.url, "--nats-prefix", fresh_prefix(), "--nats-replicas", "3",
            "--no-message-codes", "--stream-timeout-s", "120")
    replicas = [ServerProcess(tmp_path / f"replica{i}", args=args).start() for i in range(2)]
    targets = [r.target for r in replicas]
    expected = {whole_text(i) for i in range(WHOLE)} | {"".join(streamed_parts(j)) for j in range(STREAMED)}
    total = WHOLE + STREAMED
    acked: list[int] = []
    errors: list[BaseException] = []
    received: dict[str, list] = {"from 0": [], "from middle": []}
    kills: list[tuple[str, int]] = []      # what was killed, and how many messages were acknowledged then
    reached = [threading.Event() for _ in range(ROUNDS)]    # the publisher is at round r's mark ...
    killing = [threading.Event() for _ in range(ROUNDS)]    # ... and goes on once its kills began

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)
        return run

    def publish_whole():
        with Client(targets, cache_dir=tmp_path / "cache-p", reconnect_timeout_s=180) as c:
            for start in range(0, WHOLE, 20):
                if start in ROUND_AT:             # every round of kills falls inside the publishing
                    r = ROUND_AT.index(start)
                    reached[r].set()
                    assert killing[r].wait(300), f"round {r} of kills never began"
                acked.extend(c.publish(CHANNEL, [whole_text(i) for i in range(start, min(start + 20, WHOLE))]))
                time.sleep(0.1)

    def publish_streamed():
        with Client(list(reversed(targets)), cache_dir=tmp_path / "cache-s", reconnect_timeout_s=180) as c, \
                c.open_stream(CHANNEL, max_delay_ms=50) as w:
            for j in range(STREAMED):
                for piece in streamed_parts(j):
                    w.write(piece)
                acked.append(w.end_message())
                time.sleep(0.1)

    def follow(name: str, from_offset: int, order: list[str]):
        with Client(order, cache_dir=tmp_path / f"cache-{name}", reconnect_timeout_s=180) as c:
            for m in itertools.islice(c.subscribe(CHANNEL, from_offset), total - from_offset):
                received[name].append((m.offset, m.text, m.aborted))

    def kill_and_restart():
        for r in range(ROUNDS):
            assert reached[r].wait(300), f"the publisher never reached round {r}"
            node, replica = cluster.nodes[r % 3], replicas[r % 2]
            node.kill()
            kills.append((f"nats {node.name}", len(acked)))
            killing[r].set()
            time.sleep(1.5)
            replica.kill()
            kills.append((f"replica {r % 2}", len(acked)))
            time.sleep(2)
            replica.start(timeout=120)
            node.start()
            time.sleep(3)

    workers = [threading.Thread(target=guarded(f)) for f in (
        publish_whole, publish_streamed, lambda: follow("from 0", 0, targets), kill_and_restart)]
    try:
        workers[0].start()
        while not acked and not errors:          # the channel exists from the first ack on
            time.sleep(0.05)
        for t in workers[1:]:
            t.start()
        while len(acked) < MIDDLE + 1 and not errors and any(t.is_alive() for t in workers[:2]):
            time.sleep(0.1)
        late = threading.Thread(target=guarded(lambda: follow("from middle", MIDDLE, list(reversed(targets)))))
        late.start()
        for t in [*workers, late]:
            t.join(timeout=600)
        assert not errors, errors
        assert len(kills) == 2 * ROUNDS and all(n < total for _, n in kills), kills   # all while publishing
        assert sorted(acked) == list(range(total))                    # dense, each once
        for name, first in (("from 0", 0), ("from middle", MIDDLE)):
            got = received[name]
            assert [o for o, _, _ in got] == list(range(first, total)), name
            assert not any(aborted for _, _, aborted in got), name
        texts = [text for _, text, _ in received["from 0"]]
        assert len(set(texts)) == total and set(texts) == expected  # byte for byte, none twice
        assert received["from middle"] == received["from 0"][MIDDLE:]
    finally:
        for r in replicas:
            r.close()
        cluster.stop()
