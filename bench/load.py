"""Load benchmark: many concurrent exact-tier encode streams against a real ``rvqstream serve``.

Each stream feeds whole words (pre-tokens, so the server's token boundaries match the feeder's)
at a steady rate in tokens per second; streams start at evenly spread moments over the first
``--stagger-s`` seconds (0: all at once, the harshest burst). Latency of a frame = its receipt by the client minus the
moment the first byte of its text was written by the client. Reports p50/p99/max latency against
the latency budget (+20 ms), the fraction of frames the scheduler had to degrade (sent in fallback
form), tokens sent against tokens framed, and whether every stream decoded to its text. Frame
batches are decoded after the run (to map each one to the words it carries), not while it runs.
``--search`` also finds the largest number of streams the server holds with no degraded frame.

Run: ``python bench/load.py [--streams 100] [--rate 50] [--seconds 20] [--budget-ms 200] [--search]``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from rvqstream._proto import codec_pb2, codec_pb2_grpc, frame_pb2
from rvqstream.models import Codec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "scripts" / "demo_sample.txt"
GRACE_MS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``rvqstream serve`` in a child process, or (``passthrough``) bench/passthrough.py, which
    answers each text chunk with a frame carrying it raw."""

    def __init__(self, budget_ms: int, workers: int, passthrough: bool = False, extra: tuple[str, ...] = (),
                 data_dir: str | None = None):
        self.tmp = tempfile.TemporaryDirectory(prefix="rvqstream-load-")
        self.data_dir = data_dir or self.tmp.name
        self.port = free_port()
        listen = f"127.0.0.1:{self.port}"
        argv = ([str(ROOT / "bench" / "passthrough.py"), "--listen", listen] if passthrough else
                ["-m", "rvqstream.cli", "serve", "--listen", listen, "--data-dir", self.data_dir,
                 "--max-delay-ms", str(budget_ms), "--workers", str(workers), *extra])
        self.proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    async def ready(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as ch:
            await asyncio.wait_for(ch.channel_ready(), 60)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def peak_rss_bytes(self, key: str = "VmHWM") -> int | None:
        """The server process's peak resident set size so far (VmHWM; ``key`` "VmRSS": the current
        one); None once it has exited."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return None

    async def watch_rss(self, peak: list[int]) -> None:
        """Keeps ``peak[0]`` at the largest peak RSS seen, sampling every 0.2 s until cancelled."""
        while (rss := self.peak_rss_bytes()) is not None:
            peak[0] = max(peak[0], rss)
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.tmp.cleanup()


def word_chunks(codec: Codec, text: str) -> tuple[list[str], list[int]]:
    """The text as pre-token chunks (" word") and each one's token count."""
    words = [" " + w for w in text.split()]
    return words, [len(codec.parts.tokenizer.encode(w)) for w in words]


async def one_stream(stub, words, ntoks, rate: float, seconds: float, budget_ms: int, start_word: int,
                     delay: float = 0.0):
    """After ``delay`` s, feeds words at ``rate`` tokens/s for ``seconds`` -> (frame batches with
    receipt times, send log)."""
    await asyncio.sleep(delay)
    call = stub.EncodeStream()
    await call.write(codec_pb2.EncodeStreamRequest(config=codec_pb2.EncodeConfig(max_delay_ms=budget_ms)))
    header = (await call.read()).header
    received: list[tuple[float, object]] = []

    async def read():
        while (resp := await call.read()) is not grpc.aio.EOF:
            received.append((time.monotonic(), resp.frames))

    reader = asyncio.create_task(read())
    sent_words, send_times = [], []
    tokens = 0
    t_end = time.monotonic() + seconds
    next_t = time.monotonic()
    i = start_word
    try:
        while next_t < t_end:
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            w = i % len(words)
            send_times.append(time.monotonic())
            await call.write(codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=words[w].encode())))
            sent_words.append(words[w])
            tokens += ntoks[w]
            next_t += ntoks[w] / rate
            i += 1
        await call.write(codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(end_message=True)))
        await call.done_writing()
    except (asyncio.InvalidStateError, grpc.aio.AioRpcError):   # the call ended: the reader has its status
        pass
    await reader
    return header, received, send_times, sent_words, tokens, "".join(sent_words)


def batch_latencies(codec: Codec, received, send_times, sent_words, since: float) -> tuple[list, str, int, int]:
    """Decodes an rvqstream stream's batches -> (per batch with text received after ``since``:
    receipt minus the write time of the word holding its first character, in ms; the decoded
    text; frames; fallback frames)."""
    starts, pos = [], 0
    for w in sent_words:
        starts.append(pos)
        pos += len(w)
    decoder, out, text, frames, fallback = codec.decoder(), [], "", 0, 0
    for t_recv, batch in received:
        d = decoder.push(batch)
        if d.text and t_recv >= since:
            w = bisect.bisect_right(starts, len(text)) - 1
            out.append((t_recv - send_times[w]) * 1000)
        text += d.text
        frames += d.frames
        fallback += d.fallback_frames
    return out, text, frames, fallback


def chunk_latencies(received, send_times, since: float) -> list[float]:
    """Pass-through server: response k echoes text chunk k; receipt minus its write time (ms)."""
    return [(t_recv - send_times[k]) * 1000 for k, (t_recv, payload) in enumerate(received)
            if payload and k < len(send_times) and t_recv >= since]


async def run_load(streams: int, rate: float, seconds: float, budget_ms: int, workers: int,
                   warmup_s: float, verify: bool, passthrough: bool = False, stagger_s: float = 1.0,
                   device: str = "cpu") -> dict:
    """Latency, degradation and throughput of ``streams`` concurrent streams; ``passthrough``
    measures the pass-through server instead of ``rvqstream serve`` (``device``: its model's
    execution provider). Degraded frames are counted over the whole run; latency after ``warmup_s``."""
    codec = Codec.load()
    words, ntoks = word_chunks(codec, SAMPLE.read_text())
    server = Server(budget_ms, workers, passthrough, () if passthrough else ("--device", device))
    peak = [0]
    try:
        await server.ready()
        watcher = asyncio.create_task(server.watch_rss(peak))
        async with grpc.aio.insecure_channel(server.target) as ch:
            stub = codec_pb2_grpc.CodecServiceStub(ch)
            t0 = time.monotonic()
            outcomes = await asyncio.gather(*(
                one_stream(stub, words, ntoks, rate, seconds, budget_ms, (k * 7) % len(words),
                           stagger_s * k / streams)
                for k in range(streams)), return_exceptions=True)
        watcher.cancel()
        exit_code = server.proc.poll()    # None: still serving, as it should be
    finally:
        server.stop()
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = sorted({_error_text(o) for o in outcomes if isinstance(o, BaseException)})
    lat, frames, degraded, sent_tokens, framed_tokens, lost = [], 0, 0, 0, 0, 0
    for header, received, send_times, sent_words, tokens, text in results:
        sent_tokens += tokens
        if passthrough:
            frames += len(received)
            lat += chunk_latencies(received, send_times, t0 + warmup_s)
            echoed = b"".join(p for _, p in received).decode() == text
            framed_tokens += tokens if echoed else 0    # every token, once its text came back whole
            lost += verify and not echoed
            continue
        blat, decoded, nframes, fallback = batch_latencies(codec, received, send_times, sent_words, t0 + warmup_s)
        lat += blat
        frames += nframes
        degraded += fallback
        framed_tokens += len(codec.parts.tokenizer.encode(decoded))
        lost += verify and decoded != text
    lat.sort()
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    return {
        "streams": streams, "rate_tokens_per_s": rate, "seconds": seconds, "budget_ms": budget_ms,
        "stagger_s": stagger_s, "device": device,
        "workers": workers, "frames": frames, "degraded_frames": degraded,
        "degraded_fraction": degraded / frames if frames else 0.0,
        "server": "pass-through" if passthrough else "rvqstream", "server_peak_rss_bytes": peak[0],
        "server_exit_code_during_run": exit_code,
        "latency_ms": {"p50": p(0.5), "p95": p(0.95), "p99": p(0.99), "max": lat[-1] if lat else float("nan"),
                       "mean": statistics.fmean(lat) if lat else float("nan"), "frames_measured": len(lat)},
        "p99_within_budget_plus_20ms": bool(lat) and p(0.99) <= budget_ms + GRACE_MS,
        "tokens_sent": sent_tokens, "tokens_framed": framed_tokens,
        "throughput_tokens_per_s": framed_tokens / seconds,
        "streams_with_text_lost": lost if verify else None,
        "streams_failed": streams - len(results), "errors": errors,
    }


def _error_text(e: BaseException) -> str:
    return f"{e.code().name}: {e.details()}" if isinstance(e, grpc.aio.AioRpcError) else repr(e)


async def search_clean(rate, seconds, budget_ms, workers, warmup_s, step, limit,
                       stagger_s, device: str = "cpu", start: int = 0) -> tuple[int, list[dict]]:
    """The largest stream count (in steps of ``step``, from ``start``) with no degraded frame."""
    best, runs = 0, []
    for n in range(start or step, limit + 1, step):
        r = await run_load(n, rate, seconds, budget_ms, workers, warmup_s, verify=False, stagger_s=stagger_s,
                           device=device)
        runs.append(r)
        print(f"  {n:4d} streams: degraded {r['degraded_frames']}/{r['frames']}, "
              f"p99 {r['latency_ms']['p99']:.1f} ms", flush=True)
        if r["degraded_frames"]:
            break
        best = n
    return best, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--rate", type=float, default=50.0, help="tokens per second per stream")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--budget-ms", type=int, default=200, help="latency budget (max_delay_ms)")
    ap.add_argument("--workers", type=int, default=2, help="server model threads")
    ap.add_argument("--warmup-s", type=float, default=2.0, help="frames received earlier are not measured")
    ap.add_argument("--stagger-s", type=float, default=1.0, help="streams start spread over this many seconds")
    ap.add_argument("--verify", action="store_true", help="decode every stream afterwards")
    ap.add_argument("--search", action="store_true", help="also find the most streams with no degradation")
    ap.add_argument("--search-step", type=int, default=10)
    ap.add_argument("--search-seconds", type=float, default=8.0)
    ap.add_argument("--search-from", type=int, default=0, help="first stream count the search tries")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="the server's --device")
    ap.add_argument("--passthrough", action="store_true", help="measure the pass-through server instead")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = ap.parse_args()

    result = {"command": " ".join(["python", "bench/load.py", *sys.argv[1:]]),
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
              "main": asyncio.run(run_load(args.streams, args.rate, args.seconds, args.budget_ms, args.workers,
                                           args.warmup_s, args.verify, passthrough=args.passthrough,
                                           stagger_s=args.stagger_s, device=args.device))}
    m = result["main"]
    print(f"{m['streams']} streams x {m['rate_tokens_per_s']:.0f} tokens/s, budget {m['budget_ms']} ms: "
          f"p50 {m['latency_ms']['p50']:.1f} ms, p99 {m['latency_ms']['p99']:.1f} ms, "
          f"max {m['latency_ms']['max']:.1f} ms; degraded {m['degraded_frames']}/{m['frames']} "
          f"({100 * m['degraded_fraction']:.2f}%); tokens sent {m['tokens_sent']}, framed {m['tokens_framed']}"
          + (f"; streams with text lost: {m['streams_with_text_lost']}" if args.verify else ""), flush=True)
    if args.search:
        print("searching the most streams with no degraded frame:", flush=True)
        best, runs = asyncio.run(search_clean(args.rate, args.search_seconds, args.budget_ms, args.workers,
                                              args.warmup_s, args.search_step, 10 * args.streams,
                                              args.stagger_s, args.device, args.search_from))
        result["max_streams_without_degradation"] = best
        result["search"] = runs
        print(f"most streams with no degraded frame: {best} (step {args.search_step})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
