"""What the server's model threads spend a token, and whether that work slows a decoder down.

Run pinned to one core: ``taskset -c 0 python bench/group_cost.py``. ONNX Runtime runs on one
thread. Two measurements, both on the shipped integer model:

- **groups**: ``--streams`` encode streams each push a few words (3, 6 or 12 of
  ``scripts/demo_sample.txt``) and flush, and the scheduler's ``ItemGroup`` runs them all as one
  group, as a model thread does: microseconds a token in all, and outside the model calls (the
  tokenizer, coding intervals, the arithmetic coder, batch writing). Median over ``--repeats``
  rounds of ``--groups`` groups.
- **decoding one message at a time after groups**: a codec that has run those groups (batched
  frames of many shapes, as a server's does before a unary ``Decompress``) against a fresh one,
  on the same blobs (the first ``--per-source`` test messages of each of the six old sources),
  kB/s of text each, alternating (median of ``--repeats``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from edge_decode import OLD_SOURCES, sample

from rvqstream.models import Codec, SessionSettings
from rvqstream.server.scheduler import ItemGroup, WorkItem

ROOT = Path(__file__).resolve().parents[1]


def run_groups(codec: Codec, streams: int, groups: int, rng: random.Random) -> tuple[float, float, float]:
    """``groups`` groups of ``streams`` flushes -> (us a token in all, us a token outside model
    calls, tokens a group)."""
    words = (ROOT / "scripts" / "demo_sample.txt").read_text().split()
    encoders = [codec.encoder("exact") for _ in range(streams)]
    runs = []
    for _ in range(groups):
        items = []
        for enc in encoders:
            i, k = rng.randrange(len(words) - 12), rng.choice([3, 6, 12])
            items.append(WorkItem(enc, [("push", " " + " ".join(words[i:i + k])), ("flush",)], None))
        runs.append(ItemGroup(items))
    start = time.perf_counter()
    for group in runs:
        group.run(lambda done: None)
    seconds = time.perf_counter() - start
    tokens = sum(g.shape.tokens for g in runs)
    model = sum(g.model_s for g in runs)
    return seconds / tokens * 1e6, (seconds - model) / tokens * 1e6, tokens / groups


def decode_rate(codec: Codec, blobs: list[bytes], nbytes: int) -> float:
    start = time.perf_counter()
    for blob in blobs:
        codec.decompress(blob)
    return nbytes / (time.perf_counter() - start) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-source", type=int, default=10)
    ap.add_argument("--split", type=Path, default=ROOT / "data" / "test.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "group_cost.json")
    args = ap.parse_args()
    settings = SessionSettings(threads=1)
    rng = random.Random(0)
    worked, fresh = Codec.load(settings=settings), Codec.load(settings=settings)
    texts = sample(args.split, args.per_source, OLD_SOURCES)
    nbytes = sum(len(t.encode()) for t in texts)
    blobs = [fresh.compress(t) for t in texts]
    fresh = Codec.load(settings=settings)          # a decoder only: it has coded no frame
    run_groups(worked, args.streams, 3, rng)       # warm-up
    rounds = [run_groups(worked, args.streams, args.groups, rng) for _ in range(args.repeats)]
    assert [worked.decompress(b) for b in blobs] == texts == [fresh.decompress(b) for b in blobs]
    after, alone = [], []
    for _ in range(args.repeats):
        after.append(decode_rate(worked, blobs, nbytes))
        alone.append(decode_rate(fresh, blobs, nbytes))
    out = {"model_id": worked.model_id, "streams": args.streams, "groups_a_round": args.groups,
           "tokens_a_group": round(statistics.median(r[2] for r in rounds), 1),
           "us_a_token": round(statistics.median(r[0] for r in rounds), 1),
           "us_a_token_outside_model_calls": round(statistics.median(r[1] for r in rounds), 1),
           "decode_one_at_a_time_kB_per_s": {"after groups": round(statistics.median(after), 2),
                                             "fresh codec": round(statistics.median(alone), 2)},
           "messages": len(texts)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
