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
    """Infinite stream of batches, ~``tokens`` per batch, a source drawn with probability
    proportional to its token count to the power ``alpha`` (0: equal shares, 1: one epoch of each
    source takes the same time).

    Each batch is a list of ``buckets`` sub-batches of messages of similar length (one
    optimizer step accumulates them), which keeps padding low when a batch holds many messages."""

    def __init__(self, by_source: dict, tokens: int, frame: int, keyframe: int, seed: int = 0,
                 buckets: int = 1, alpha: float = 0.0):
        self.by_source = {k: v for k, v in by_source.items() if v}
        self.sources = sorted(self.by_source)
        self.weights = [sum(map(len, self.by_source[s])) ** alpha for s in self.sources]
        self.tokens, self.frame, self.keyframe, self.buckets = tokens, frame, keyframe, buckets
        self.rng = random.Random(seed)

    def __iter__(self):
        while True:
            seqs, n = [], 0
            while n < self.tokens:
                source = self.rng.choices(self.sources, self.weights)[0]
                s = self.rng.choice(self.by_source[source])
                if len(s) == 0:
                    continue
                seqs.append(s)
                n += min(len(s), self.keyframe) + 1
            seqs.sort(key=len)
            cuts = np.cumsum([min(len(s), self.keyframe) + 1 for s in seqs]) * self.buckets // (n + 1)
            groups = [[s for s, c in zip(seqs, cuts) if c == b] for b in range(self.buckets)]
            yield [make_batch(g, self.frame, self.keyframe, self.rng) for g in groups if g]


class _Batches(torch.utils.data.IterableDataset):
    def __init__(self, mixture: Mixture):
        self.mixture = mixture

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None:   # each worker its own random stream
            self.mixture.rng = random.Random(self.mixture.rng.random() + info.id)
        return iter(self.mixture)


def batch_loader(mixture: Mixture, workers: int) -> torch.utils.data.DataLoader:
    """The mixture's batches built by ``workers`` processes, in pinned memory."""
    return torch.utils.data.DataLoader(_Batches(mixture), batch_size=None, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), prefetch_factor=4,
                                       persistent_workers=True)
