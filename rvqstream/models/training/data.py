"""Training batches: messages tokenized, cut into keyframe chunks and frames, mixed across sources.

A chunk is at most ``keyframe`` tokens of one message; its inputs start with the start symbol
(``EOS_ID``) and its targets end with ``EOS_ID`` when the chunk ends the message. Frames are runs
of up to F tokens; some messages get random shorter frames, as a stream cut by its latency budget.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from rvqstream.models.tokenizer import Tokenizer


def load_split(data_dir: Path, split: str, tok: Tokenizer, limit_per_source: int | None = None):
    """-> {source: [np.int32 token arrays]} for one split."""
    texts: dict[str, list[str]] = defaultdict(list)
    with open(data_dir / f"{split}.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if limit_per_source is None or len(texts[row["source"]]) < limit_per_source:
                texts[row["source"]].append(row["text"])
    out = {}
    for src, ts in texts.items():
        enc = tok._tok.encode_batch(ts, add_special_tokens=False)
        out[src] = [np.asarray(e.ids, dtype=np.int32) for e in enc]
    return out


def frame_lengths(n: int, frame: int, rng: random.Random, ragged: bool) -> list[int]:
    out = []
    while n > 0:
        k = min(n, rng.randint(1, frame) if ragged else frame)
        out.append(k)
        n -= k
    return out


def make_batch(seqs: list[np.ndarray], frame: int, keyframe: int, rng: random.Random, ragged_prob=0.2):
    """Collate messages (token arrays) into one batch dict of tensors (see model.CodecModel.forward)."""
    chunks = []
    for s in seqs:
        start = rng.randrange(0, max(1, len(s) - keyframe + 1), keyframe) if len(s) > keyframe else 0
        body = s[start:start + keyframe]
        chunks.append((body, start + keyframe >= len(s)))
    T = max(len(b) for b, _ in chunks) + 1
    B = len(chunks)
    inputs = np.zeros((B, T), np.int64)
    targets = np.zeros((B, T), np.int64)
    tmask = np.zeros((B, T), bool)
    frame_of = np.full((B, T), -1, np.int64)
    pos_in = np.zeros((B, T), np.int64)
    frames, flen = [], []
    for i, (body, last) in enumerate(chunks):
        n = len(body)
        inputs[i, 1:n + 1] = body
        targets[i, :n] = body
        tmask[i, :n] = True
        if last:
            tmask[i, n] = True      # the EOS target, conditioned on no frame (frame_of stays -1)
        t = 0
        for k in frame_lengths(n, frame, rng, rng.random() < ragged_prob):
            fr = np.zeros(frame, np.int64)
            fr[:k] = body[t:t + k]
            frame_of[i, t:t + k] = len(frames)
            pos_in[i, t:t + k] = np.arange(k)
            frames.append(fr)
            flen.append(k)
            t += k
    return {
        "inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets),
        "target_mask": torch.from_numpy(tmask), "frame_of": torch.from_numpy(frame_of),
        "pos_in_frame": torch.from_numpy(pos_in),
        "frames": torch.from_numpy(np.stack(frames)), "frame_len": torch.tensor(flen, dtype=torch.int64),
    }


class Mixture:
    """Infinite stream of batches, sources drawn with equal probability, ~``tokens`` per batch."""

    def __init__(self, by_source: dict, tokens: int, frame: int, keyframe: int, seed: int = 0):
        self.by_source = {k: v for k, v in by_source.items() if v}
        self.sources = sorted(self.by_source)
        self.tokens, self.frame, self.keyframe = tokens, frame, keyframe
        self.rng = random.Random(seed)

    def __iter__(self):
        while True:
            seqs, n = [], 0
            while n < self.tokens:
                s = self.rng.choice(self.by_source[self.rng.choice(self.sources)])
                if len(s) == 0:
                    continue
                seqs.append(s)
                n += min(len(s), self.keyframe) + 1
            yield make_batch(seqs, self.frame, self.keyframe, self.rng)
