"""The gRPC fuzzer: malformed and adversarial requests to every RPC of a real ``rvqstream serve``
(run by bench/fuzz.py, and briefly by tests/test_fuzz.py).

Every request is sent as raw bytes through generic multi-callables, so a request may be a valid
message with adversarial fields (random bytes in bytes fields, invalid UTF-8, huge and negative
numbers, unknown enum values, unknown or malformed model ids, random channel and producer names,
truncated and mutated blobs and frame batches, oversized fields), the wrong first message of a
stream, a valid message with its serialized bytes mutated, or plain garbage. Calls carry the
access file's admin token, a token that may only subscribe, a garbage token or none. Many calls
run at once (grpc.aio); streams may be held open until their deadline, and server streams are
cancelled after a few responses.

Outcome: every call must end with a status by its deadline (plus ``HANG_GRACE_S``); any status
but UNKNOWN and INTERNAL counts as handled, those two are findings (with the server log's
traceback for the correlation id the status quotes). The server must stay alive and healthy,
answer a real round trip at the end, and its RSS (``/proc/<pid>/status`` VmRSS) is sampled from
start to end.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rvqstream._proto import channel_pb2, codec_pb2, frame_pb2
from rvqstream.server.access import new_token, token_entry

HANG_GRACE_S = 5.0      # a call without a status this long past its deadline hangs
DEADLINES_S = (0.5, 1.0, 2.0, 5.0)
MAX_FIELD = 64 << 10    # the server's --max-message-bytes here: larger fields must be refused
VALID_CHANNELS = ("fuzz/a", "fuzz/b", "c0", "fuzz/deep/er.name-1_x")
BAD_CHANNELS = ("", "/x", "a b", "ü", "a" * 129, "\x00", ".x", "x*", "fuzz/a\n", "-a")
ENUMS = (0, 1, 2, 3, -1, 7, 2**31 - 1, -(2**31))
U32 = (0, 1, 2, 8, 9, 17, 1000, 60_000, 60_001, 2**31, 2**32 - 1)
U64 = (0, 1, 2, 3, 5, 100, 2**31, 2**63 - 1, 2**63, 2**64 - 1)
KB = 1 << 10


def _methods() -> dict[str, tuple[str, bool, bool]]:
    """Every RPC of the two services: short name -> (path, client streaming, server streaming)."""
    out = {}
    for module, service in ((codec_pb2, "CodecService"), (channel_pb2, "ChannelService")):
        desc = module.DESCRIPTOR.services_by_name[service]
        for m in desc.methods:
            out[m.name] = (f"/{desc.full_name}/{m.name}", m.client_streaming, m.server_streaming)
    return out


METHODS = _methods()


@dataclass(frozen=True)
class Material:
    """Valid inputs to start from: blobs, batch sequences (tier name, batches), texts, and the
    mutation ``mutate(data, program, donors)``."""

    blobs: list[bytes]
    sequences: list[tuple[str, list[bytes]]]
    texts: list[str]
    mutate: Callable[[bytes, bytes, list[bytes]], bytes]


@dataclass
class Plan:
    """One call: its method, the serialized requests, deadline, whether the client holds its side
    open until the deadline, how many responses it reads before cancelling, and its token."""

    method: str
    requests: list[bytes]
    deadline: float
    hold_open: bool = False
    read_limit: int = 1 << 30
    token: str | None = None


class Requests:
    """Adversarial requests for every method, from a seeded random source."""

    def __init__(self, rng: random.Random, material: Material, model_id: str, tokens: dict[str, str],
                 malformed: float):
        self.rng, self.m, self.model_id, self.tokens = rng, material, model_id, tokens
        self.malformed = malformed      # share of calls whose serialized requests are mutated or garbage
        self.donors = material.blobs + [b for _, seq in material.sequences for b in seq]

    # -- field values -------------------------------------------------------------------------

    def pick(self, values):
        return values[self.rng.randrange(len(values))]

    def raw(self, most: int = 64) -> bytes:
        r = self.rng.random()
        size = MAX_FIELD + self.rng.randrange(1, 4 * KB) if r < 0.002 else self.rng.randrange(most + 1)
        return self.rng.randbytes(size)

    def mutated(self, data: bytes) -> bytes:
        return self.m.mutate(data, self.rng.randbytes(3 * self.rng.randrange(1, 5)), self.donors)

    def text(self) -> bytes:
        """Short UTF-8 text, or bytes that are not UTF-8 (cut inside a character, or random)."""
        r = self.rng.random()
        t = self.pick(self.m.texts).encode("utf-8")[:self.rng.randrange(1, 48)]
        if r < 0.6:
            return t
        if r < 0.75:
            return "日本語🎉".encode()[:self.rng.randrange(1, 10)]
        if r < 0.995:
            return self.raw(24)
        return self.rng.randbytes(MAX_FIELD + 1)

    def model(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return ""
        if r < 0.7:
            return self.model_id
        return self.pick([self.model_id[:12], self.model_id + "x", self.model_id.upper(), "0" * 64, "ü" * 8,
                          self.rng.randbytes(32).hex(), "x" * 5000, "../../etc/passwd", "\x00"])

    def channel(self) -> str:
        r = self.rng.random()
        if r < 0.7:
            return self.pick(VALID_CHANNELS)
        if r < 0.9:
            return self.pick(BAD_CHANNELS)
        return self.rng.randbytes(self.rng.randrange(1, 12)).decode("latin-1")

    def producer(self) -> str:
        return self.pick(["", "p1", "p2", "fuzz-producer", "p 1", "x" * 65, "ü", "\x00", "p1/../p2"])

    def batch(self) -> tuple[int, list[bytes]]:
        """(tier number, batches): a valid sequence, one of its batches mutated, or random bytes."""
        tier_name, seq = self.pick(self.m.sequences)
        tier = {"exact": self.pick((0, 1)), "semantic": 2}[tier_name]
        seq = list(seq)
        r = self.rng.random()
        if r < 0.5:
            i = self.rng.randrange(len(seq))
            seq[i] = self.mutated(seq[i])
        elif r < 0.6:
            seq = [self.raw(24) for _ in range(self.rng.randrange(1, 3))]
        elif r < 0.65:
            seq = [b""]
        elif r < 0.7:
            tier = self.pick(ENUMS)
        return tier, seq

    # -- requests -----------------------------------------------------------------------------

    def plan(self) -> Plan:
        method = self.pick(WEIGHTED)
        requests, hold, limit = getattr(self, f"_{method}")()
        r = self.rng.random()
        if r < self.malformed / 2:      # a valid message's bytes mutated
            requests = [self.mutated(q) for q in requests] or [self.raw()]
        elif r < self.malformed:        # garbage for the serialized request
            requests = [self.raw(self.pick((8, 64, 512))) for _ in range(max(1, len(requests)))]
        t = self.rng.random()
        bad = ["garbage", "", "Bearer", self.tokens["admin"][:-1] + "x"]
        token = (self.tokens["admin"] if t < 0.85 else self.tokens["reader"] if t < 0.93
                 else None if t < 0.97 else self.pick(bad))
        return Plan(method, requests, self.pick(DEADLINES_S), hold, limit, token)

    def _Compress(self):
        req = codec_pb2.CompressRequest(text_utf8=self.text(), tier=self.pick(ENUMS),
                                        stage_count=self.pick(U32), model_id=self.model())
        return [req.SerializeToString()], False, 1

    def _Decompress(self):
        r = self.rng.random()
        blob = self.pick(self.m.blobs)
        blob = (blob if r < 0.2 else self.mutated(blob) if r < 0.8 else blob[:self.rng.randrange(len(blob))]
                if r < 0.9 else self.raw())
        return [codec_pb2.DecompressRequest(blob=blob).SerializeToString()], False, 1

    def _stream_first(self, config: bytes, other: bytes) -> list[bytes]:
        """The first request of a client stream: its config, mostly; else the wrong kind or empty."""
        r = self.rng.random()
        return [config] if r < 0.85 else [other] if r < 0.95 else [b""]

    def _chunk(self) -> frame_pb2.TextChunk:
        r = self.rng.random()
        return frame_pb2.TextChunk(text_utf8=self.text(), flush=r < 0.3, end_message=0.3 <= r < 0.6)

    def _EncodeStream(self):
        config = codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(
            tier=self.pick(ENUMS), stage_count=self.pick(U32), max_delay_ms=self.pick(U32),
            model_id=self.model()))
        out = self._stream_first(config.SerializeToString(),
                                 codec_pb2.EncodeStreamRequest(chunk=self._chunk()).SerializeToString())
        for _ in range(self.rng.randrange(5)):
            r = self.rng.random()
            req = (codec_pb2.EncodeStreamRequest(chunk=self._chunk()) if r < 0.85 else config if r < 0.92
                   else codec_pb2.EncodeStreamRequest())
            out.append(req.SerializeToString())
        return out, self.rng.random() < 0.1, 1 << 30

    def _DecodeStream(self):
        tier, batches = self.batch()
        config = codec_pb2.DecodeStreamRequest(config=codec_pb2.DecodeConfig(model_id=self.model(),
                                                                             tier=tier))
        out = self._stream_first(config.SerializeToString(),
                                 codec_pb2.DecodeStreamRequest(frames=batches[0]).SerializeToString())
        out += [codec_pb2.DecodeStreamRequest(frames=b).SerializeToString() for b in batches]
        if self.rng.random() < 0.1:
            out.insert(self.rng.randrange(1, len(out) + 1), config.SerializeToString())
        return out, self.rng.random() < 0.1, 1 << 30

    def _GetModel(self):
        req = codec_pb2.GetModelRequest(model_id=self.model())
        return [req.SerializeToString()], False, self.rng.randrange(1, 3)

    def _ListModels(self):
        return [codec_pb2.ListModelsRequest().SerializeToString()], False, 1

    def _Publish(self):
        config = channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(
            channel=self.channel(), tier=self.pick(ENUMS), producer_id=self.producer()))
        message = channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
            text_utf8=self.text(), sequence=self.pick(U64)))
        out = self._stream_first(config.SerializeToString(), message.SerializeToString())
        for _ in range(self.rng.randrange(4)):
            r = self.rng.random()
            req = (channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(
                text_utf8=self.text(), sequence=self.pick(U64))) if r < 0.9 else config)
            out.append(req.SerializeToString())
        return out, self.rng.random() < 0.1, 1 << 30

    def _PublishStream(self):
        config = channel_pb2.PublishStreamRequest(config=channel_pb2.PublishStreamConfig(
            channel=self.channel(), tier=self.pick(ENUMS), max_delay_ms=self.pick(U32),
            producer_id=self.producer(), sequence=self.pick(U64)))
        out = self._stream_first(config.SerializeToString(),
                                 channel_pb2.PublishStreamRequest(chunk=self._chunk()).SerializeToString())
        for _ in range(self.rng.randrange(5)):
            r = self.rng.random()
            req = (channel_pb2.PublishStreamRequest(chunk=self._chunk()) if r < 0.9 else config if r < 0.95
                   else channel_pb2.PublishStreamRequest())
            out.append(req.SerializeToString())
        return out, self.rng.random() < 0.15, 1 << 30

    def _Subscribe(self):
        req = channel_pb2.SubscribeRequest(channel=self.channel(), from_offset=self.pick(U64),
                                           from_part=self.pick(U32))
        return [req.SerializeToString()], False, self.rng.randrange(1, 4)

    def _FetchMessage(self):
        req = channel_pb2.FetchMessageRequest(channel=self.channel(), offset=self.pick(U64))
        return [req.SerializeToString()], False, 1


# how often each method is called: cheap refusals are most of the load
WEIGHTED = (["Compress"] * 3 + ["Decompress"] * 4 + ["EncodeStream"] * 2 + ["DecodeStream"] * 3
            + ["GetModel"] + ["ListModels"] + ["Publish"] * 2 + ["PublishStream"] * 2 + ["Subscribe"] * 3
            + ["FetchMessage"] * 3)


CLIENT_WRITE_FAILURE = "Internal error from Core"   # grpc.aio's status for a write after the call ended


@dataclass
class GrpcTally:
    issued: int = 0
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)          # (method, status) -> calls
    findings: dict = field(default_factory=dict)                 # "method STATUS: details" -> count, examples
    hangs: list = field(default_factory=list)
    slowest_s: float = 0.0


async def _call(channel: grpc.aio.Channel, plan: Plan) -> tuple[str, str]:
    """Runs one call -> (status name, details). A client stream that the server ended while the
    client still wrote gets grpc.aio's INTERNAL "Internal error from Core" in place of the
    server's status (grpc/grpc#36066): it is counted as CLIENT_WRITE_FAILURE, not as the server's."""
    path, client_streaming, server_streaming = METHODS[plan.method]
    metadata = (("authorization", f"Bearer {plan.token}"),) if plan.token is not None else None

    async def requests():
        for q in plan.requests:
            yield q
        if plan.hold_open:
            await asyncio.sleep(plan.deadline + 1)

    try:
        if not client_streaming and not server_streaming:
            await channel.unary_unary(path)(plan.requests[0], timeout=plan.deadline, metadata=metadata)
            return "OK", ""
        if client_streaming:
            call = channel.stream_stream(path)(requests(), timeout=plan.deadline, metadata=metadata)
        else:
            call = channel.unary_stream(path)(plan.requests[0], timeout=plan.deadline, metadata=metadata)
        read = 0
        async for _ in call:
            read += 1
            if read >= plan.read_limit:
                call.cancel()
                break
        code, details = (await call.code()).name, await call.details() or ""
    except grpc.aio.AioRpcError as e:
        code, details = e.code().name, e.details() or ""
    if code == "INTERNAL" and client_streaming and details == CLIENT_WRITE_FAILURE:
        return "CLIENT_WRITE_FAILURE", details
    return code, details


async def _worker(channel: grpc.aio.Channel, gen: Requests, tally: GrpcTally,
                  stop: Callable[[], bool]) -> None:
    while not stop():
        tally.issued += 1
        plan = gen.plan()
        t0 = time.perf_counter()
        try:
            status, details = await asyncio.wait_for(_call(channel, plan), plan.deadline + HANG_GRACE_S)
        except TimeoutError:
            status, details = "HANG", ""
            tally.hangs.append(_describe(plan))
        tally.slowest_s = max(tally.slowest_s, time.perf_counter() - t0)
        tally.requests += 1
        tally.statuses[(plan.method, status)] += 1
        if status in ("UNKNOWN", "INTERNAL"):
            key = f"{plan.method} {status}: {CORRELATION.sub('(correlation id <id>)', details)[:300]}"
            entry = tally.findings.setdefault(key, {"count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < 3:
                entry["examples"].append({**_describe(plan), "details": details[:500]})


CORRELATION = re.compile(r"\(correlation id ([0-9a-f]+)\)")


def _describe(plan: Plan) -> dict:
    return {"method": plan.method, "requests": [q[:300].hex() for q in plan.requests[:6]],
            "deadline_s": plan.deadline, "hold_open": plan.hold_open,
            "token": None if plan.token is None else plan.token[:8] + "..."}


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def access_file(path: Path) -> dict[str, str]:
    """Writes an access file: an admin token and one that may only subscribe to fuzz/* -> tokens."""
    tokens = {"admin": new_token(), "reader": new_token()}
    path.write_text(token_entry("fuzz-admin", tokens["admin"], ["*"], ["*"], True)
                    + token_entry("fuzz-reader", tokens["reader"], [], ["fuzz/*"], False))
    return tokens


SERVE_ARGS = ("--max-message-bytes", str(MAX_FIELD), "--stream-timeout-s", "2", "--grace-s", "1")


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


async def _healthy(target: str, token: str, text: str) -> dict:
    """Health check and a real round trip (Compress, then Decompress) on a fresh connection."""
    async with grpc.aio.insecure_channel(target) as ch:
        out = {}
        try:
            health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            out["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
        except grpc.aio.AioRpcError as e:
            out["health"] = e.code().name
        md = (("authorization", f"Bearer {token}"),)
        try:
            request = codec_pb2.CompressRequest(text_utf8=text.encode()).SerializeToString()
            blob = await ch.unary_unary(METHODS["Compress"][0])(request, timeout=30, metadata=md)
            blob = codec_pb2.CompressResponse.FromString(blob).blob
            back = await ch.unary_unary(METHODS["Decompress"][0])(
                codec_pb2.DecompressRequest(blob=blob).SerializeToString(), timeout=30, metadata=md)
            out["round_trip"] = codec_pb2.DecompressResponse.FromString(back).text == text
        except grpc.aio.AioRpcError as e:
            out["round_trip"] = f"{e.code().name}: {e.details()}"
        return out


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


def _server_side(findings: dict, tracebacks: dict) -> None:
    """Adds to each finding whose status quotes a correlation id the exception the server logged."""
    for entry in findings.values():
        ids = {m for e in entry["examples"] for m in CORRELATION.findall(e["details"])}
        entry["server_errors"] = sorted(last for last, tb in tracebacks.items()
                                        if ids & set(tb["correlation_ids"]))


async def grpc_fuzz(target: str, pid: int, log: Path, tokens: dict[str, str], material: Material,
                    model_id: str, seconds: float | None = None, requests: int | None = None, seed: int = 0,
                    concurrency: int = 32, malformed: float = 0.14) -> dict:
    """Fuzzes the server at ``target`` (process ``pid``, log ``log``) for ``seconds`` or ``requests``
    calls, ``malformed`` of them with mutated or garbage serialized requests -> results (see the
    module docstring). RSS: at the start, after a warm-up (a tenth of the run), at the end."""
    tally = GrpcTally()
    t0 = time.monotonic()
    rss = [(0.0, rss_kib(pid))]

    def stop() -> bool:
        return tally.issued >= requests if requests is not None else time.monotonic() - t0 >= seconds

    async def sample() -> None:
        while True:
            await asyncio.sleep(1)
            rss.append((round(time.monotonic() - t0, 1), rss_kib(pid)))

    options = [("grpc.max_send_message_length", 4 * MAX_FIELD),
               ("grpc.max_receive_message_length", 4 * MAX_FIELD)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(
            _worker(channel, Requests(random.Random(seed * 1000 + i), material, model_id, tokens, malformed),
                    tally, stop) for i in range(concurrency)))
        sampler.cancel()
    fuzz_s = time.monotonic() - t0
    await asyncio.sleep(3)      # streams held open and the abort timers of streamed messages settle
    alive = _alive(pid)
    health = await _healthy(target, tokens["admin"], "The server still answers after the fuzzing.") \
        if alive else {}
    end_rss = rss_kib(pid) if alive else None
    warm = next((v for t, v in rss if t >= fuzz_s / 10), rss[-1][1])
    statuses, by_method = Counter(), {}
    for (method, status), n in sorted(tally.statuses.items()):
        by_method.setdefault(method, {})[status] = n
        statuses[status] += n
    tracebacks = server_tracebacks(log)
    _server_side(tally.findings, tracebacks)
    return {"requests": tally.requests, "seconds": round(fuzz_s, 1),
            "requests_per_s": round(tally.requests / fuzz_s, 1), "concurrency": concurrency,
            "malformed_share": malformed, "statuses": dict(statuses.most_common()),
            "statuses_by_method": by_method,
            "unknown_or_internal": statuses["UNKNOWN"] + statuses["INTERNAL"],
            "findings": tally.findings, "hangs": len(tally.hangs), "hang_list": tally.hangs[:20],
            "slowest_call_s": round(tally.slowest_s, 2), "server_alive": alive, **health,
            "rss_kib": {"start": rss[0][1], "after_warm_up": warm, "end": end_rss,
                        "max": max(v for _, v in rss), "samples": rss[::max(1, len(rss) // 60)]},
            "server_tracebacks": tracebacks}


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status
