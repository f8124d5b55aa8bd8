"""The scoreboard: rvqstream and its anchors measured on the same inputs in one run.

Writes ``<out>/results.json`` (every figure, the machine, the commit, the model, the settings
and the seconds each part took), ``<out>/REPORT.md`` and its PNG plots (bench/report.py).
Parts: rate per source (bench/rate.py), bytes on a gRPC stream (bench/grpc_bytes.py), speed
(bench/speed.py), rate against latency budget (bench/budget.py), service latency against
concurrent streams (bench/service.py), live code streams on channels: wire bytes against the
budget and latency with fan-out (bench/live.py), determinism across ONNX Runtime settings
(bench/determinism.py), the integer model's whole-split check (bench/intlm_check.py: every way of
computing its tables against the numpy reference, round trips, rate per source) and edge decode
speed on one core (bench/edge_decode.py, pinned with ``taskset``), the message codes
(bench/semantic_codes.py: search quality against the baselines, near-duplicates, search latency,
sync bytes) and scale-out (bench/scale_out.py: publish and follow through a server and the log
alone on SQLite against NATS JetStream on one and three nodes, with and without ``sync_interval:
always``; two replicas against one), run as scripts of their own. REPORT.md ends with the attacks
section of ``<out>/attacks.json`` and the fuzzing section of ``<out>/fuzz.json`` when they are
there (bench/attacks.py, ``make bench-attacks``; bench/fuzz.py, ``make bench-fuzz``: runs of their
own, not repeated here).

Two bundles, both coding the exact tier: the shipped default, the integer model (``Codec.load()``),
and the float model (``Codec.load(SEMANTIC_DIR)``, the previous default, which also reads the retired
semantic tier's data), whose rate is kept beside the integer model's as the baseline. A full run
writes the scripts' own results to ``<out>/intlm_check.json``, ``<out>/edge_decode.json``,
``<out>/semantic_codes.json`` and ``<out>/scale_out.json`` too; a quick run (small limits) leaves
those files as they are. Every figure of the run is in ``results.json``; ``python bench/report.py``
renders REPORT.md again from it.

Run: ``python bench/scoreboard.py [--quick] [--jsonl FILE ...] [--out bench/results]``
(``make bench``, ``make bench ARGS=--quick``). Needs data/ (``make data``) and the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import brotli
import numpy as np
import onnxruntime
import zstandard
from budget import rate_vs_budget
from codec_bench import FLOAT_EXACT, OURS, float_codec, load, train_dict
from determinism import determinism
from grpc_bytes import measured_wire, wire_bytes
from intlm_check import OLD_SOURCES
from live import live
from rate import anchor_bpb, combine, exact_rates
from report import append_runs_of_their_own, write_report
from service import service_curve
from speed import client_peak_rss, cores, load_time, throughput

from rvqstream.models import Codec, SessionSettings

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plan:
    """How much of the test split each part uses (messages per source) and the service load."""

    rate_messages: int
    wire_messages: int
    budget_messages: int
    speed_messages: int
    determinism_messages: int
    intlm_limit: int | None = None             # bench/intlm_check.py --limit (None: the whole split)
    edge_per_source: int | None = None         # bench/edge_decode.py --per-source (None: its default)
    edge_repeats: int | None = None            # bench/edge_decode.py --repeats (None: its default)
    service_streams: tuple[int, ...] = (1, 10, 100, 300)
    service_seconds: float = 15.0
    service_warmup_s: float = 2.0
    service_verify: bool = True
    stream_rate_tokens_per_s: float = 50.0
    budget_rates_tokens_per_s: tuple[float, ...] = (30.0, 60.0)
    budgets_ms: tuple[float | None, ...] = (50, 100, 200, 400, 800, 1600, None)
    service_budget_ms: int = 200


FULL = Plan(rate_messages=10**9, wire_messages=100, budget_messages=20, speed_messages=40, determinism_messages=10**9)
QUICK = Plan(rate_messages=40, wire_messages=8, budget_messages=4, speed_messages=6,
             determinism_messages=4, intlm_limit=3, edge_per_source=3, edge_repeats=1, service_seconds=4.0,
             service_warmup_s=1.0, service_verify=False)


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) * 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal"))
    return {"cpu": cpu, "cores": cores(), "memory_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "zstandard": zstandard.__version__, "brotli": brotli.version}


def commit() -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()
    return {"sha": git("rev-parse", "HEAD"), "tracked_files_modified": bool(git("status", "--porcelain", "-uno"))}


def finite(x):
    """``x`` with every NaN float replaced by None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def head(by_source: dict[str, list[str]], n: int) -> dict[str, list[str]]:
    return {s: t[:n] for s, t in by_source.items()}


def flat(by_source: dict[str, list[str]]) -> list[str]:
    return [t for texts in by_source.values() for t in texts]


def read_jsonl(path: Path, limit: int) -> list[str]:
    with open(path) as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(limit))]


class Timer:
    def __init__(self, seconds: dict):
        self.seconds = seconds

    def part(self, name: str):
        print(f"[{datetime.datetime.now():%H:%M:%S}] {name}", flush=True)
        self.seconds[name] = time.perf_counter()
        return self

    def done(self, name: str) -> None:
        self.seconds[name] = time.perf_counter() - self.seconds[name]


def model_info(codec: Codec) -> dict:
    return {"model_id": codec.model_id, "config": codec.manifest.get("config", {}),
            "bundle_bytes": sum(len(b) for b in codec.bundle_files().values())}


def script(cmd: list[str], out_json: Path) -> dict:
    """Run one of the bench scripts that write their results to ``out_json`` (``--out``) -> them, or
    {"error": ...} when it fails (the rest of the run is kept)."""
    cmd = [*cmd, "--out", str(out_json)]
    print("  $ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, check=False)
    if done.returncode != 0:
        print(f"  failed with exit code {done.returncode}", flush=True)
        return {"error": f"`{' '.join(cmd)}` exited with code {done.returncode}"}
    return json.loads(out_json.read_text())


def one_core() -> list[str]:
    """``taskset -c <the first core this process may use>`` when there is taskset, else nothing."""
    return ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if shutil.which("taskset") else []


def run(plan: Plan, data: Path, jsonl: list[Path], out: Path) -> dict:
    t = Timer({})
    t0 = time.perf_counter()
    codec = Codec.load(settings=SessionSettings(threads=1))      # the integer model: the exact tier
    baseline = float_codec()                                     # the float model: the exact-tier baseline
    test = load(data / "test.jsonl", plan.rate_messages)
    zdict = train_dict(data / "train.jsonl")
    inputs = {**{f"test/{s}": v for s, v in test.items()},
              **{f"jsonl/{p.name}": read_jsonl(p, plan.rate_messages) for p in jsonl}}
    res = {"model": model_info(codec), "float_model": model_info(baseline), "rate": {}, "wire": {}}

    t.part("rate")
    for name, texts in inputs.items():
        blobs = [codec.compress(t) for t in texts]
        res["rate"][name] = exact_rates(codec, texts, blobs, zdict,
                                        {FLOAT_EXACT: (baseline, [baseline.compress(t) for t in texts])})
        res["wire"][name] = wire_bytes(codec, texts, blobs, zdict)
        bpb = res["rate"][name]["bpb"]
        print(f"  {name}: rvqstream exact {bpb[OURS]:.3f} bpb (float model, previous: {bpb[FLOAT_EXACT]:.3f}), "
              f"zstd-19+dict {bpb['zstd-19+dict']:.3f}", flush=True)
    tests = [k for k in inputs if k.startswith("test/")]
    old = [k for k in tests if k.removeprefix("test/") in OLD_SOURCES]
    res["rate"]["test (all sources)"] = combine([res["rate"][k] for k in tests])
    if old and len(old) < len(tests):
        res["rate"]["test (the old six sources)"] = combine([res["rate"][k] for k in old])
        res["rate"]["test (new sources)"] = combine([res["rate"][k] for k in tests if k not in old])
    res["wire"]["test (all sources)"] = combine([res["wire"][k] for k in tests])
    t.done("rate")

    t.part("wire")
    res["wire_measured"] = asyncio.run(measured_wire(head(inputs, plan.wire_messages), zdict))
    t.done("wire")

    t.part("budget")
    btexts = flat(head(test, plan.budget_messages))
    res["budget"] = {"messages": len(btexts), "anchors_bpb": anchor_bpb(btexts, zdict),
                     "rows": rate_vs_budget(codec, btexts, list(plan.budget_rates_tokens_per_s),
                                            list(plan.budgets_ms))}
    t.done("budget")

    t.part("speed")
    speed_texts = flat(head(test, plan.speed_messages))
    res["speed"] = {**throughput(speed_texts, zdict.as_bytes(), cores()), "model_load": load_time(),
                    "decoding_client": client_peak_rss(codec, speed_texts)}
    t.done("speed")

    t.part("determinism")
    res["determinism"] = determinism(flat(head(test, plan.determinism_messages)), threads=[1, 2],
                                     workers=cores())
    t.done("determinism")

    t.part("service")
    res["service"] = service_curve(list(plan.service_streams), plan.stream_rate_tokens_per_s,
                                   plan.service_seconds, plan.service_budget_ms, cores(),
                                   plan.service_warmup_s, plan.service_verify)
    t.done("service")

    t.part("live")
    res["live"] = live(quick=plan is QUICK)
    t.done("live")

    # scripts of their own; a quick run's small samples do not replace their full results in ``out``
    with tempfile.TemporaryDirectory(prefix="rvqstream-bench-") as tmp:
        where = out if plan.intlm_limit is None else Path(tmp)
        t.part("intlm_check")
        limit = [] if plan.intlm_limit is None else ["--limit", str(plan.intlm_limit)]
        res["intlm_check"] = script([sys.executable, "bench/intlm_check.py", "--split", str(data / "test.jsonl"),
                                     *limit], where / "intlm_check.json")
        t.done("intlm_check")

        where = out if plan.edge_per_source is None and plan.edge_repeats is None else Path(tmp)
        t.part("edge_decode")
        opts = [*(["--per-source", str(plan.edge_per_source)] if plan.edge_per_source is not None else []),
                *(["--repeats", str(plan.edge_repeats)] if plan.edge_repeats is not None else [])]
        res["edge_decode"] = script([*one_core(), sys.executable, "bench/edge_decode.py", "--split",
                                     str(data / "test.jsonl"), *opts], where / "edge_decode.json")
        t.done("edge_decode")

        where = out if plan is FULL else Path(tmp)
        t.part("semantic_codes")
        res["semantic_codes"] = script([sys.executable, "bench/semantic_codes.py", "--data", str(data),
                                        *([] if plan is FULL else ["--quick"])], where / "semantic_codes.json")
        t.done("semantic_codes")

        t.part("scale_out")
        res["scale_out"] = script([sys.executable, "bench/scale_out.py", *([] if plan is FULL else ["--quick"])],
                                  where / "scale_out.json")
        t.done("scale_out")
    res["seconds"] = {**t.seconds, "total": time.perf_counter() - t0}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small samples and short service runs (< 5 min)")
    ap.add_argument("--jsonl", type=Path, action="append", default=[],
                    help='extra messages, one {"text": ...} per line (rate and wire bytes); repeatable')
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    if not (args.data / "test.jsonl").exists():
        sys.exit(f"{args.data}/test.jsonl is missing: build the split with `make data`")
    np.seterr(all="ignore")
    plan = QUICK if args.quick else FULL
    started = datetime.datetime.now(datetime.UTC)
    results = {"command": " ".join(["python", "bench/scoreboard.py", *sys.argv[1:]]),
               "mode": "quick" if args.quick else "full", "plan": asdict(plan),
               "started_utc": started.isoformat(timespec="seconds"), "machine": machine(),
               "commit": commit()}
    args.out.mkdir(parents=True, exist_ok=True)
    results.update(finite(run(plan, args.data, args.jsonl, args.out)))
    (args.out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    write_report(results, args.out)
    append_runs_of_their_own(args.out)
    print(f"wrote {args.out}/results.json and REPORT.md in {results['seconds']['total']:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
