"""The integer model over a whole test split: bit-exact tables every way, byte-exact round trips,
and its rate against zstd -19 with the dictionary, per source.

Tables: every message's contexts (the start symbol and up to 240 tokens each, as the codec cuts
them) through the numpy reference, then through ONNX Runtime frame by frame (16 tokens a call)
with 1 and 2 threads at every graph-optimization level, one token a call, and as rows of a
64-row batch (one token a call for 64 contexts at once); each context's tables hashed, every way
against the reference. Round trips: each message's blob (coded frame by frame) decoded one token a
call (``decompress``) and 64 blobs at once (``decompress_many``). ``--device cuda`` (on a GPU
machine) adds the CUDA provider's graph, frame by frame and as rows, and decodes the CPU's blobs on
CUDA and CUDA's blobs on the CPU.

Run: ``python bench/intlm_check.py [--limit N] [--device cuda] [--out bench/results/intlm_check.json]``;
a long run splits over cores: one process ``--ways "frames threads=1" --no-round-trips`` (against the
reference), another ``--against frames --ways "frames threads=2,steps,rows"`` (against the first's
way), then ``--merge A.json B.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import zstandard

from rvqstream.models import Codec
from rvqstream.models.coding import KEYFRAME
from rvqstream.models.int_runtime import IntStepModel
from rvqstream.models.intlm import IntLM, lm_info
from rvqstream.models.runtime import SessionSettings
from rvqstream.models.selfcheck import digest, graph_gaps, reference_gaps
from rvqstream.models.tokenizer import EOS_ID

ROOT = Path(__file__).resolve().parents[1]
OLD_SOURCES = ("fortunes", "gcide", "kjv", "man", "pydoc", "wordnet")
LEVELS = {"disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
ROWS = 64


def load_split(path: Path, limit: int | None) -> list[dict]:
    rows, seen = [], defaultdict(int)
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if limit is None or seen[r["source"]] < limit:
                seen[r["source"]] += 1
                rows.append(r)
    return rows


def contexts_of(codec: Codec, texts: list[str]) -> list[list[int]]:
    """Each message's contexts: the start symbol, then up to KEYFRAME tokens (then the next)."""
    out = []
    for t in texts:
        toks = codec.parts.tokenizer.encode(t)
        for i in range(0, max(1, len(toks)), KEYFRAME):
            out.append([EOS_ID, *toks[i:i + KEYFRAME]])
    return out


def per_context(gaps_of, contexts: list[list[int]]) -> list[str]:
    """Each context's table digest, ``gaps_of`` run on ROWS contexts at a time (the tables of a
    whole split would not fit in memory: 4096 int32 per token)."""
    out = []
    for i in range(0, len(contexts), ROWS):
        out += [digest([g]) for g in gaps_of(contexts[i:i + ROWS])]
    return out


def compare(name: str, want: list[str], got: list[str], seconds: float, tokens: int) -> dict:
    bad = sum(a != b for a, b in zip(want, got))
    print(f"{name:28s} {bad} mismatched of {len(want)} contexts  {tokens / seconds:9.0f} tables/s", flush=True)
    return {"contexts": len(want), "mismatched": bad, "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, default=ROOT / "data" / "test.jsonl")
    ap.add_argument("--limit", type=int, default=None, help="messages per source (default: all)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "intlm_check.json")
    ap.add_argument("--skip-ways", action="store_true", help="rate and round trips only")
    ap.add_argument("--ways", default="", help="comma-separated prefixes: run only the ways named so "
                    "(split a long run over processes; --merge joins them)")
    ap.add_argument("--no-round-trips", action="store_true")
    ap.add_argument("--against", choices=["reference", "frames"], default="reference",
                    help="compare every way with the numpy reference, or (a split run whose other part "
                         "checks that one against the reference) with ORT frame by frame, 1 thread")
    ap.add_argument("--merge", type=Path, nargs="*", default=None,
                    help="join the results of runs split with --ways into --out (nothing is run)")
    args = ap.parse_args()
    if args.merge:
        merged: dict = {}
        for path in args.merge:
            part = json.loads(path.read_text())
            ways = {**merged.get("ways", {}), **part.pop("ways", {})}
            merged = {**merged, **{k: v for k, v in part.items() if v is not None}, "ways": ways}
        args.out.write_text(json.dumps(merged, indent=1) + "\n")
        return
    rows = load_split(args.split, args.limit)
    codec = Codec.load()
    files = codec.bundle_files()
    lm, info = IntLM.from_bytes(files["lm.npz"]), lm_info(files["lm.npz"])
    texts = [r["text"] for r in rows]
    contexts = contexts_of(codec, texts)
    tokens = sum(map(len, contexts))
    result: dict = {"model_id": codec.model_id, "messages": len(texts), "contexts": len(contexts),
                    "tables": tokens, "ort_version": ort.__version__, "cpu": _cpu(), "ways": {}}
    print(f"{len(texts)} messages, {len(contexts)} contexts, {tokens} tables", flush=True)

    if not args.skip_ways:
        t = time.time()
        if args.against == "reference":
            want = per_context(lambda c: reference_gaps(lm, c), contexts)
            result["ways"]["numpy reference"] = {"seconds": round(time.time() - t, 1)}
        else:
            step = IntStepModel(files["step.onnx"], info, SessionSettings(threads=1))
            want = per_context(lambda c: graph_gaps(step, c, "frames"), contexts)
        result[f"{args.against}_digest"] = digest([np.frombuffer(bytes.fromhex("".join(want)), np.uint8)])
        ways = [(f"frames threads={th} {lv}", files["step.onnx"], "cpu", th, level, "frames")
                for th in (1, 2) for lv, level in LEVELS.items()]
        ways += [("steps threads=1 all", files["step.onnx"], "cpu", 1, LEVELS["all"], "steps"),
                 (f"rows of {ROWS} threads=1 all", files["step.onnx"], "cpu", 1, LEVELS["all"], "rows")]
        if args.device == "cuda":
            ways += [("cuda frames", files["step_cuda.onnx"], "cuda", 1, LEVELS["all"], "frames"),
                     (f"cuda rows of {ROWS}", files["step_cuda.onnx"], "cuda", 1, LEVELS["all"], "rows")]
        only = [w for w in args.ways.split(",") if w]
        ways = [w for w in ways if not only or w[0].startswith(tuple(only))]
        for name, graph, device, threads, level, mode in ways:
            step = IntStepModel(graph, info, SessionSettings(threads=threads, optimization=level), device)
            t = time.time()
            got = per_context(lambda c, step=step, mode=mode: graph_gaps(step, c, mode), contexts)
            result["ways"][name] = compare(name, want, got, time.time() - t, tokens)

    if not args.no_round_trips:
        result["round_trips"], blobs = round_trips(codec, texts, args.device)
        result["rate"] = rate(codec, rows, blobs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "ways" and v is not None}, indent=1))


def round_trips(codec: Codec, texts: list[str], device: str) -> tuple[dict, list[bytes]]:
    """Each message coded frame by frame, decoded one token a call and 64 at once (and across
    devices with cuda) -> (failures and times, the blobs)."""
    t = time.time()
    blobs = [codec.compress(x) for x in texts]
    enc_s = time.time() - t
    t = time.time()
    alone = sum(codec.decompress(b) != x for b, x in zip(blobs, texts))
    alone_s = time.time() - t
    t = time.time()
    many = codec.decompress_many(blobs)
    many_s = time.time() - t
    out = {"messages": len(texts), "failed_decompress": alone, "failed_decompress_many": sum(
        m != x for m, x in zip(many, texts)), "encode_s": round(enc_s, 1), "decompress_s": round(alone_s, 1),
        "decompress_many_s": round(many_s, 1)}
    if device == "cuda":
        gpu = Codec.load(device="cuda")
        gpu_blobs = [gpu.compress(x) for x in texts]
        out["cuda_blobs_equal_cpu_blobs"] = sum(a == b for a, b in zip(blobs, gpu_blobs))
        out["failed_cpu_blobs_on_cuda"] = sum(m != x for m, x in zip(gpu.decompress_many(blobs), texts))
        out["failed_cuda_blobs_on_cpu"] = sum(m != x for m, x in zip(codec.decompress_many(gpu_blobs), texts))
    print(json.dumps(out), flush=True)
    return out, blobs


def rate(codec: Codec, rows: list[dict], blobs: list[bytes]) -> dict:
    """Bits per byte per source (every blob byte counted) against zstd -19 with the dictionary."""
    zd = zstandard.ZstdCompressionDict(codec.parts.zdict)
    z = zstandard.ZstdCompressor(level=19, dict_data=zd)
    acc: dict = defaultdict(lambda: [0, 0, 0, 0])
    for r, blob in zip(rows, blobs):
        data = r["text"].encode()
        for key in (r["source"], "all" if r["source"] in OLD_SOURCES else "new", "everything"):
            a = acc[key]
            a[0] += len(data)
            a[1] += len(blob)
            a[2] += len(z.compress(data))
            a[3] += 1
    return {k: {"messages": a[3], "bytes": a[0], "bpb": round(8 * a[1] / a[0], 4),
                "zstd19_dict_bpb": round(8 * a[2] / a[0], 4), "ratio": round(a[1] / a[2], 3)}
            for k, a in sorted(acc.items())}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
