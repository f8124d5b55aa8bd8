"""Live code streams on channels: wire cost against the latency budget (bench/live_wire.py), and
latency from a word's write to its decode with fan-out (bench/live_fanout.py), on a real
``rvqstream serve`` over loopback.

Run: ``python bench/live.py [--quick] [--out bench/results/live.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from pathlib import Path

from live_fanout import fanout
from live_streams import ROOT, SAMPLE
from live_wire import wire_curve

from rvqstream.models import Codec

FULL = {"budgets_ms": [50, 200, 1000, 5000], "wire_producers": 8, "wire_per_producer": 3,
        "fanout": [(1, 1), (1, 10), (1, 100), (100, 1)], "seconds": 15.0}
QUICK = {"budgets_ms": [50, 200, 1000], "wire_producers": 3, "wire_per_producer": 1,
         "fanout": [(1, 1), (1, 10), (10, 1)], "seconds": 6.0}


def live(quick: bool, rate: float = 50.0, budget_ms: int = 200, workers: int = 2) -> dict:
    """The whole benchmark -> results (see the module docstring)."""
    plan = QUICK if quick else FULL
    codec = Codec.load()
    print("wire cost of a live stream against the latency budget:", flush=True)
    wire = asyncio.run(wire_curve(codec, plan["budgets_ms"], plan["wire_producers"], plan["wire_per_producer"],
                                  rate))
    print(f"latency from a word's write to its decode, budget {budget_ms} ms, {rate:.0f} tokens/s:", flush=True)
    fan = [asyncio.run(fanout(codec, p, s, rate, budget_ms, plan["seconds"], workers)) for p, s in plan["fanout"]]
    return {"plan": {**plan, "rate_tokens_per_s": rate, "budget_ms": budget_ms, "subscriber_processes": workers},
            "texts": "data/test.jsonl" if (ROOT / "data" / "test.jsonl").exists() else str(SAMPLE.relative_to(ROOT)),
            "wire": wire, "fanout": fan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer budgets, producers and subscribers")
    ap.add_argument("--rate", type=float, default=50.0, help="tokens per second per producer")
    ap.add_argument("--workers", type=int, default=2, help="subscriber processes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live.json")
    args = ap.parse_args()
    result = {"command": " ".join(["python", "bench/live.py", *sys.argv[1:]]),
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
              **live(args.quick, args.rate, workers=args.workers)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
