"""Service: frame latency and throughput against concurrent streams, rvqstream against the
pass-through baseline, on loopback.

Each point is ``load.run_load``: a fresh server in a child process, ``streams`` exact-tier
encode streams fed words at ``rate`` tokens/s each for ``seconds``. Latency (ms) is a frame's
receipt minus the write of its first word (frames received in the warm-up are not counted);
throughput is tokens delivered per second by the streams that completed (a stream the server
ends with an error is counted as failed); the server's peak RSS is read from /proc (bytes).
The pass-through server (bench/passthrough.py) answers each chunk with a raw frame at once: the
floor the gRPC setup itself sets.
"""

from __future__ import annotations

import asyncio

from load import run_load

SERVERS = {"rvqstream": False, "pass-through": True}


def service_curve(streams: list[int], rate: float, seconds: float, budget_ms: int, workers: int,
                  warmup_s: float, verify: bool) -> list[dict]:
    """One ``run_load`` result per (server, stream count); ``verify`` decodes every stream."""
    rows = []
    for name, passthrough in SERVERS.items():
        for n in streams:
            r = asyncio.run(run_load(n, rate, seconds, budget_ms, workers, warmup_s, verify,
                                     passthrough=passthrough))
            print(f"  {name:12s} {n:4d} streams: p50 {r['latency_ms']['p50']:.1f} ms, "
                  f"p99 {r['latency_ms']['p99']:.1f} ms, degraded {100 * r['degraded_fraction']:.1f}%, "
                  f"{r['throughput_tokens_per_s']:.0f} tokens/s, {r['streams_failed']} streams failed", flush=True)
            rows.append(r)
    return rows
