"""Exact-tier round trip of every message of the valid and test splits (a bar of the codec).

Run: ``python bench/roundtrip_splits.py`` -> prints messages, failures, bytes and bpb per split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rvqstream.models import Codec

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    codec = Codec.load()
    failures = 0
    for split in ("valid", "test"):
        n = nbytes = nblob = bad = 0
        with open(ROOT / "data" / f"{split}.jsonl") as f:
            for line in f:
                text = json.loads(line)["text"]
                blob = codec.compress(text)
                ok = codec.decompress(blob) == text
                bad += not ok
                n, nbytes, nblob = n + 1, nbytes + len(text.encode()), nblob + len(blob)
        print(f"{split}: {n} messages, {bad} failed to round-trip, {nbytes} bytes -> {nblob} "
              f"({8 * nblob / nbytes:.3f} bpb)", flush=True)
        failures += bad
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
