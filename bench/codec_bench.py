"""Codec benchmark on the test split: exact-tier rate against the anchors and single-thread
encode/decode speed (bytes of text per second).

Two bundles, both coding the exact tier: the shipped default, the integer model (``Codec.load()``),
and the float model (``Codec.load(SEMANTIC_DIR)``, the previous default, which also reads the
retired semantic tier's data), whose rate and speed are kept beside the integer model's as the
baseline ("float model (previous)").

Run: ``python bench/codec_bench.py [--limit 300] [--out bench/results/codec.json]``
(needs ``make data`` for data/; brotli from the ``bench`` extra).

Rates are bits per byte of UTF-8 text, counting every byte of each message's output (rvqstream:
the whole blob, header and checks included). Anchors, per message: gzip -9, brotli -11,
zstd -19 with a 110 KB dictionary trained on the train split, and the same zstd with one
compression context per source, flushed after each message (bytes = what the flush emits).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import brotli
import numpy as np
import zstandard

from rvqstream.models import Codec, SessionSettings
from rvqstream.models.bundle import SEMANTIC_DIR

ROOT = Path(__file__).resolve().parents[1]
OURS = "rvqstream exact"                                  # the exact tier of the default (integer) model
FLOAT_EXACT = "rvqstream exact, float model (previous)"  # the float bundle's exact tier: the baseline


def float_codec(settings: SessionSettings | None = None) -> Codec:
    """The float model's bundle (ONNX Runtime on 1 thread unless ``settings`` say otherwise): the
    previous default, the exact-tier baseline (``FLOAT_EXACT``)."""
    return Codec.load(SEMANTIC_DIR, settings=settings or SessionSettings(threads=1))


def load(path: Path, limit: int) -> dict[str, list[str]]:
    by: dict[str, list[str]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if len(by[r["source"]]) < limit:
                by[r["source"]].append(r["text"])
    return dict(sorted(by.items()))


def train_dict(train: Path) -> zstandard.ZstdCompressionDict:
    samples = []
    with open(train) as f:
        for i, line in enumerate(f):
            if i % 7 == 0:
                samples.append(json.loads(line)["text"].encode())
    return zstandard.train_dictionary(110_000, samples, level=19)


def anchors(texts: list[str], zdict) -> dict[str, list[int]]:
    cz = zstandard.ZstdCompressor(level=19, dict_data=zdict)
    stream = zstandard.ZstdCompressor(level=19, dict_data=zdict).compressobj()
    out = defaultdict(list)
    for t in texts:
        b = t.encode()
        out["gzip-9"].append(len(gzip.compress(b, 9)))
        out["brotli-11"].append(len(brotli.compress(b, quality=11)))
        out["zstd-19+dict"].append(len(cz.compress(b)))
        out["zstd-19+dict stream"].append(len(stream.compress(b) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)))
    return out


def round_trip(codec: Codec, texts: list[str], what: str) -> tuple[list[bytes], float, float]:
    """Exact-tier blobs of ``texts`` and the seconds to encode and to decode them; raises if one
    does not round-trip."""
    t0 = time.perf_counter()
    blobs = [codec.compress(t) for t in texts]
    t1 = time.perf_counter()
    outs = [codec.decompress(b) for b in blobs]
    t2 = time.perf_counter()
    if outs != texts:
        raise AssertionError(f"{what}: exact tier did not round-trip")
    return blobs, t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--limit", type=int, default=300, help="messages per source")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "codec.json")
    args = ap.parse_args()

    codec = Codec.load(settings=SessionSettings(threads=1))
    baseline = float_codec()
    test = load(args.data / "test.jsonl", args.limit)
    zdict = train_dict(args.data / "train.jsonl")
    report = {"model_id": codec.model_id, "float_model_id": baseline.model_id,
              "machine": platform.processor() or platform.machine(),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True, cwd=ROOT, check=False).stdout.strip(), "sources": {}}
    seconds = {m: {"encode": 0.0, "decode": 0.0} for m in (OURS, FLOAT_EXACT)}
    total_bytes = 0
    for src, texts in test.items():
        nbytes = [len(t.encode()) for t in texts]
        total_bytes += sum(nbytes)
        blobs = {}
        for m, c in ((OURS, codec), (FLOAT_EXACT, baseline)):
            blobs[m], enc_s, dec_s = round_trip(c, texts, f"{src}, {m}")
            seconds[m]["encode"] += enc_s
            seconds[m]["decode"] += dec_s
        sizes = {m: [len(b) for b in bl] for m, bl in blobs.items()} | anchors(texts, zdict)
        excess = [o - z for o, z in zip(sizes[OURS], sizes["zstd-19+dict"])]
        row = {"messages": len(texts), "bytes": sum(nbytes),
               "bpb": {k: 8 * sum(v) / sum(nbytes) for k, v in sizes.items()},
               "median message bpb": {k: statistics.median(8 * x / n for x, n in zip(v, nbytes))
                                      for k, v in sizes.items()},
               "max bytes above zstd+dict": max(excess),
               "messages above zstd+dict by > 4 bytes": sum(e > 4 for e in excess),
               "blob modes": dict(sorted(defaultdict(int, {m: sum(Codec.blob_mode(b).name == m for b in blobs[OURS])
                                                           for m in ("EXACT", "ZSTD", "RAW")}).items()))}
        row["ratio to zstd+dict"] = row["bpb"][OURS] / row["bpb"]["zstd-19+dict"]
        row["float model (previous) ratio to zstd+dict"] = row["bpb"][FLOAT_EXACT] / row["bpb"]["zstd-19+dict"]
        report["sources"][src] = row
        print(f"{src:9s} n={len(texts):4d} exact: integer model {row['bpb'][OURS]:.3f} bpb, float model "
              f"(previous) {row['bpb'][FLOAT_EXACT]:.3f} | "
              + " | ".join(f"{k} {v:.3f}" for k, v in row["bpb"].items() if k not in (OURS, FLOAT_EXACT))
              + f" | ratio {row['ratio to zstd+dict']:.3f} | max excess {max(excess)} B", flush=True)
    speed = {m: {op: total_bytes / s for op, s in ops.items()} for m, ops in seconds.items()}
    report["speed_bytes_per_s_single_thread"] = speed[OURS]
    report["speed_bytes_per_s_single_thread_float_model"] = speed[FLOAT_EXACT]
    for m, v in speed.items():
        print(f"single-thread exact tier, {'integer model' if m == OURS else 'float model (previous)'}: encode {v['encode']:,.0f} B/s, decode {v['decode']:,.0f} B/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
