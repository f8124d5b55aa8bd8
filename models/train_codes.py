"""Train the message-code quantizer: residual k-means on the message encoder's embeddings of the
training split.

Steps: draw up to ``--per-source`` messages of each source of ``data/train.jsonl`` (seeded), embed
them with the encoder graph (``rvqstream.models.message_encoder``; cached in ``--out``/train_emb.npy),
then fit the stages one after another: stage s is k-means (K = 256, k-means++ seeding, Lloyd
iterations) on the residuals the stages before it leave. Fitting each stage to the residual of the
ones before it is what makes every prefix of a code a code by itself. Writes ``--out``/rvq.npz.

Run: ``python -m models.train_codes --data data --encoder DIR --out runs/codes``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from rvqstream.models.message_encoder import MessageEncoder
from rvqstream.models.rvq_codes import K, ResidualQuantizer


def sample_messages(path: Path, per_source: int, seed: int = 0) -> list[str]:
    """Up to ``per_source`` texts of each source of a split file, drawn with a fixed seed."""
    by_source: dict[str, list[str]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            m = json.loads(line)
            by_source[m["source"]].append(m["text"])
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for source in sorted(by_source):
        texts = by_source[source]
        pick = rng.permutation(len(texts))[:per_source]
        out += [texts[i] for i in sorted(pick)]
    return out


def sample_uniform(path: Path, n: int, seed: int = 1) -> list[str]:
    """``n`` texts of a split file drawn uniformly (every message alike), with a fixed seed."""
    with open(path) as f:
        texts = [json.loads(line)["text"] for line in f]
    pick = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in sorted(pick)]


def embed_cached(cache: Path, texts_fn, encoder_dir: Path, threads: int) -> np.ndarray:
    """The encoder's embeddings of ``texts_fn()``, computed once and kept in ``cache`` (.npy)."""
    if cache.exists():
        return np.load(cache)
    texts = texts_fn()
    enc = MessageEncoder((encoder_dir / "encoder.onnx").read_bytes(),
                         (encoder_dir / "encoder_tokenizer.json").read_bytes(), threads)
    t = time.time()
    x = np.concatenate([enc.embed(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
    print(f"embedded {len(texts)} messages in {time.time() - t:.0f} s", flush=True)
    np.save(cache, x)
    return x


def kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeded Lloyd iterations on float32 [N, D] -> centroids float32 [k, D]."""
    n = len(x)
    sq = (x ** 2).sum(1)
    centers = [x[rng.integers(n)]]
    best = sq - 2 * x @ centers[0] + centers[0] @ centers[0]
    for _ in range(1, k):
        p = np.maximum(best, 0)
        c = x[rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)]
        centers.append(c)
        best = np.minimum(best, sq - 2 * x @ c + c @ c)
    c = np.stack(centers).astype(np.float32)
    for _ in range(iters):
        assign = ((c ** 2).sum(1)[None, :] - 2 * x @ c.T).argmin(1)
        sums = np.zeros_like(c)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=k)
        empty = counts == 0
        c[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():     # an empty cluster restarts at the points worst served
            dist = sq - 2 * (x * c[assign]).sum(1) + (c[assign] ** 2).sum(1)
            c[empty] = x[np.argsort(-dist)[:int(empty.sum())]]
    return c


def fit(x: np.ndarray, stages: int, iters: int = 20, seed: int = 0, log=print) -> ResidualQuantizer:
    """Greedy residual k-means: ``stages`` codebooks of K codewords on float32 [N, D]."""
    rng = np.random.default_rng(seed)
    residual = x.astype(np.float32, copy=True)
    books = []
    for s in range(stages):
        t = time.time()
        c = kmeans(residual, K, iters, rng)
        assign = ((c ** 2).sum(1)[None, :] - 2 * residual @ c.T).argmin(1)
        residual -= c[assign]
        books.append(c)
        log(f"stage {s + 1}: mean squared residual {(residual ** 2).sum(1).mean():.4f} ({time.time() - t:.0f} s)")
    return ResidualQuantizer(np.stack(books))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--encoder", type=Path, required=True, help="folder of encoder.onnx and its tokenizer")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-source", type=int, default=4000, help="messages of each source")
    ap.add_argument("--uniform", type=int, default=0, help="and this many drawn from the whole split")
    ap.add_argument("--stages", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    split = args.data / "train.jsonl"
    x = embed_cached(args.out / "train_emb.npy", lambda: sample_messages(split, args.per_source),
                     args.encoder, args.threads)
    if args.uniform:
        x = np.concatenate([x, embed_cached(args.out / f"train_emb_uniform{args.uniform}.npy",
                                            lambda: sample_uniform(split, args.uniform), args.encoder,
                                            args.threads)])
    t = time.time()
    print(f"fitting on {len(x)} embeddings", flush=True)
    rvq = fit(x, args.stages, args.iters, log=lambda s: print(s, flush=True))
    (args.out / "rvq.npz").write_bytes(rvq.to_bytes())
    print(f"fitted {args.stages} stages on {len(x)} embeddings in {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
