"""Train the byte-level BPE tokenizer on the train split (balanced across sources).

Run: ``python -m models.train_tokenizer --data data --out rvqstream/models/artifacts``
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rvqstream.models.tokenizer import EOS_TOKEN

PER_SOURCE_BYTES = 6_000_000  # cap per source so the large sources do not dominate the merges


def train(data_dir: Path, out_dir: Path, vocab_size: int = 4096) -> Path:
    by_source: dict[str, list[str]] = defaultdict(list)
    used: dict[str, int] = defaultdict(int)
    with open(data_dir / "train.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if used[row["source"]] < PER_SOURCE_BYTES:
                by_source[row["source"]].append(row["text"])
                used[row["source"]] += len(row["text"].encode())
    texts = [t for ts in by_source.values() for t in ts]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS_TOKEN], min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    tok.save(str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--out", type=Path, default=Path("rvqstream/models/artifacts"))
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()
    print(train(args.data, args.out, args.vocab_size))


if __name__ == "__main__":
    main()
