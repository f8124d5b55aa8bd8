"""Edge decode speed on one core: a message at a time, and a backlog many messages at once.

Run it pinned to one core: ``taskset -c 0 python bench/edge_decode.py``. ONNX Runtime runs on one
thread. Measured on the same test messages in the same run: the integer model decoding one blob
at a time (``decompress``) and 64 or more at once (``decompress_many``), the float model of the
previous bundle one at a time (the baseline: it cannot batch), and zstd -19 with the dictionary.
Throughput is UTF-8 bytes of text per second (median of ``--repeats`` runs); every output is
checked against the text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import zstandard

from rvqstream.models import Codec, SessionSettings
from rvqstream.models.bundle import SEMANTIC_DIR

ROOT = Path(__file__).resolve().parents[1]
OLD_SOURCES = ("fortunes", "gcide", "kjv", "man", "pydoc", "wordnet")     # the project's test split


def sample(path: Path, per_source: int, sources: tuple[str, ...] | None) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if sources and r["source"] not in sources:
                continue
            if seen.get(r["source"], 0) < per_source:
                seen[r["source"]] = seen.get(r["source"], 0) + 1
                out.append(r["text"])
    return out


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", type=Path, default=ROOT / "data" / "test.jsonl")
    ap.add_argument("--per-source", type=int, default=20)
    ap.add_argument("--all-sources", action="store_true", help="the new kinds of text too")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "edge_decode.json")
    args = ap.parse_args()
    texts = sample(args.split, args.per_source, None if args.all_sources else OLD_SOURCES)
    nbytes = sum(len(t.encode()) for t in texts)
    settings = SessionSettings(threads=1)
    intlm, floatlm = Codec.load(settings=settings), Codec.load(SEMANTIC_DIR, settings=settings)
    blobs = [intlm.compress(t) for t in texts]
    fblobs = [floatlm.compress(t) for t in texts]
    zd = zstandard.ZstdCompressionDict(intlm.parts.zdict)
    zc, zdec = zstandard.ZstdCompressor(level=19, dict_data=zd), zstandard.ZstdDecompressor(dict_data=zd)
    zblobs = [zc.compress(t.encode()) for t in texts]
    assert [intlm.decompress(b) for b in blobs] == texts
    assert intlm.decompress_many(blobs) == texts
    assert [floatlm.decompress(b) for b in fblobs] == texts
    res = {
        "integer model, one at a time": timed(lambda: [intlm.decompress(b) for b in blobs], args.repeats),
        "integer model, 64 at once": timed(lambda: [intlm.decompress_many(blobs[i:i + 64])
                                                    for i in range(0, len(blobs), 64)], args.repeats),
        f"integer model, all {len(blobs)} at once (64 rows)": timed(lambda: intlm.decompress_many(blobs),
                                                                    args.repeats),
        "float model (previous bundle), one at a time": timed(lambda: [floatlm.decompress(b) for b in fblobs],
                                                              args.repeats),
        "integer model encode, one at a time": timed(lambda: [intlm.compress(t) for t in texts], args.repeats),
        "float model encode, one at a time": timed(lambda: [floatlm.compress(t) for t in texts], args.repeats),
        "zstd-19+dict decode": timed(lambda: [zdec.decompress(b) for b in zblobs], args.repeats),
    }
    out = {"messages": len(texts), "bytes": nbytes, "cpu_affinity": sorted(os.sched_getaffinity(0)),
           "kB_per_s": {k: round(nbytes / v / 1000, 2) for k, v in res.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
