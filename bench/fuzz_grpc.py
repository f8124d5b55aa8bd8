"""The gRPC fuzzer: malformed and adversarial requests to every RPC of a real ``rvqstream serve``
(run by bench/fuzz.py, and briefly by tests/test_fuzz.py). The requests are planned by
bench/fuzz_grpc_requests.py; the server is started and watched by bench/fuzz_grpc_server.py. Many
calls run at once (grpc.aio).

Outcome: every call must end with a status by its deadline (plus ``HANG_GRACE_S``); any status
but UNKNOWN and INTERNAL counts as handled, those two are findings (with the server log's
traceback for the correlation id the status quotes). A call that asks to write in the retired
semantic tier (``Plan.retired``) must not end OK (``RETIRED_WRITTEN``, a finding); its statuses are
counted apart (``retired_tier_writes``). The server must stay alive and healthy, answer a real
round trip at the end, and its RSS (``/proc/<pid>/status`` VmRSS) is sampled from start to end.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from fuzz_grpc_requests import METHODS, Material, Plan, Requests
from fuzz_grpc_server import MAX_FIELD, process_alive, rss_kib, server_tracebacks
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rvqstream._proto import codec_pb2

HANG_GRACE_S = 5.0      # a call without a status this long past its deadline hangs
CLIENT_WRITE_FAILURE = "Internal error from Core"   # grpc.aio's status for a write after the call ended
RETIRED_WRITTEN = "a call that asks to write in the retired semantic tier ended OK"


@dataclass
class GrpcTally:
    issued: int = 0
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)          # (method, status) -> calls
    retired: Counter = field(default_factory=Counter)           # status -> calls writing the semantic tier
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
        if plan.retired:
            tally.retired[status] += 1
        if status in ("UNKNOWN", "INTERNAL"):
            _finding(tally, f"{plan.method} {status}: {CORRELATION.sub('(correlation id <id>)', details)[:300]}",
                     plan, details)
        elif plan.retired and status == "OK":
            _finding(tally, f"{plan.method}: {RETIRED_WRITTEN}", plan, details)


def _finding(tally: GrpcTally, key: str, plan: Plan, details: str) -> None:
    entry = tally.findings.setdefault(key, {"count": 0, "examples": []})
    entry["count"] += 1
    if len(entry["examples"]) < 3:
        entry["examples"].append({**_describe(plan), "details": details[:500]})


CORRELATION = re.compile(r"\(correlation id ([0-9a-f]+)\)")


def _describe(plan: Plan) -> dict:
    return {"method": plan.method, "requests": [q[:300].hex() for q in plan.requests[:6]],
            "deadline_s": plan.deadline, "hold_open": plan.hold_open,
            "token": None if plan.token is None else plan.token[:8] + "..."}


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
    alive = process_alive(pid)
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
            "retired_tier_writes": dict(tally.retired.most_common()),
            "findings": tally.findings, "hangs": len(tally.hangs), "hang_list": tally.hangs[:20],
            "slowest_call_s": round(tally.slowest_s, 2), "server_alive": alive, **health,
            "rss_kib": {"start": rss[0][1], "after_warm_up": warm, "end": end_rss,
                        "max": max(v for _, v in rss), "samples": rss[::max(1, len(rss) // 60)]},
            "server_tracebacks": tracebacks}
