"""Speed: encode and decode throughput, model load time and the decoding client's memory.

Throughput is UTF-8 bytes of text per second of wall time, message by message (one blob per
message), for the rvqstream exact tier and for zstd -19 with the trained dictionary and
brotli -11 on the same messages. "1 thread": one process, ONNX Runtime on 1 thread. "all cores":
one worker process per core (spawned, each with its own model), the messages split evenly.
Model load time: a fresh interpreter importing ``rvqstream.models`` and loading the shipped
bundle (s). Client peak RSS: a fresh process that loads the model and decodes every blob (bytes).

``python bench/speed.py decode-client FILE`` is that client (FILE: length-prefixed blobs).
"""

from __future__ import annotations

import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import brotli
import zstandard

from rvqstream.models import Codec, SessionSettings

METHODS = ("rvqstream exact", "zstd-19+dict", "brotli-11")
_worker: dict = {}


def _init(zdict: bytes) -> None:
    """Pool initializer (and the in-process setup): the model and the anchors' coders."""
    d = zstandard.ZstdCompressionDict(zdict)
    _worker.update(codec=Codec.load(settings=SessionSettings(threads=1)),
                   zc=zstandard.ZstdCompressor(level=19, dict_data=d),
                   zd=zstandard.ZstdDecompressor(dict_data=d))


def _run(method: str, op: str, items: list, reps: int = 1) -> list:
    """``op`` ("encode"/"decode") of every item with ``method``, ``reps`` times; -> the last outputs."""
    for _ in range(reps - 1):
        _once(method, op, items)
    return _once(method, op, items)


def _once(method: str, op: str, items: list) -> list:
    w = _worker
    if method == "rvqstream exact":
        return [w["codec"].compress(x) for x in items] if op == "encode" else \
            [w["codec"].decompress(x) for x in items]
    if method == "zstd-19+dict":
        return [w["zc"].compress(x.encode()) for x in items] if op == "encode" else \
            [w["zd"].decompress(x).decode() for x in items]
    return [brotli.compress(x.encode(), quality=11) for x in items] if op == "encode" else \
        [brotli.decompress(x).decode() for x in items]


def throughput(texts: list[str], zdict: bytes, cores: int, min_s: float = 0.5) -> dict:
    """{method: {"1 thread"/"all cores": {"encode": B/s, "decode": B/s}}}. Fast methods repeat the
    messages until one pass on 1 thread takes ``min_s``, so that the pool's overhead is noise."""
    nbytes = sum(len(t.encode()) for t in texts)
    _init(zdict)
    out, reps = {}, {}
    with ProcessPoolExecutor(cores, mp_context=get_context("spawn"), initializer=_init,
                             initargs=(zdict,)) as pool:
        list(pool.map(_run, ["zstd-19+dict"] * cores, ["encode"] * cores, [texts[:1]] * cores))  # warm up
        for m in METHODS:
            t0 = time.perf_counter()
            blobs = _run(m, "encode", texts)
            if _run(m, "decode", blobs) != texts:
                raise AssertionError(f"{m} did not round-trip")
            r = reps[m] = max(1, math.ceil(min_s / (time.perf_counter() - t0)))
            res = {"1 thread": {}, "all cores": {}}
            for op, items in (("encode", texts), ("decode", blobs)):
                t1 = time.perf_counter()
                _run(m, op, items, r)
                t2 = time.perf_counter()
                list(pool.map(_run, [m] * cores, [op] * cores, [items[i::cores] for i in range(cores)],
                              [r] * cores))
                t3 = time.perf_counter()
                res["1 thread"][op], res["all cores"][op] = r * nbytes / (t2 - t1), r * nbytes / (t3 - t2)
            out[m] = res
    return {"bytes": nbytes, "messages": len(texts), "cores": cores, "repetitions": reps, "bytes_per_s": out}


def load_time(repeats: int = 3) -> dict:
    """Median seconds, in a fresh interpreter, to import rvqstream.models and to load the bundle."""
    code = ("import time; t0 = time.perf_counter(); from rvqstream.models import Codec; "
            "t1 = time.perf_counter(); Codec.load(); t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    runs = [tuple(map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())) for _ in range(repeats)]
    return {"import_s": statistics.median(r[0] for r in runs), "load_s": statistics.median(r[1] for r in runs)}


def client_peak_rss(codec: Codec, texts: list[str]) -> dict:
    """Peak RSS (bytes) of a fresh process that loads the model and decodes ``texts``' blobs."""
    with tempfile.NamedTemporaryFile(suffix=".blobs") as f:
        for t in texts:
            b = codec.compress(t)
            f.write(struct.pack("<I", len(b)) + b)
        f.flush()
        out = subprocess.run([sys.executable, __file__, "decode-client", f.name], capture_output=True,
                             text=True, check=True).stdout.split()
    return {"peak_rss_bytes": int(out[0]), "messages_decoded": int(out[1])}


def decode_client(path: Path) -> None:
    """Load the model, decode every blob in ``path``, print peak RSS (bytes) and the count."""
    codec = Codec.load()
    data, pos, n = path.read_bytes(), 0, 0
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        codec.decompress(data[pos + 4:pos + 4 + size])
        pos, n = pos + 4 + size, n + 1
    hwm = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:"))
    print(int(hwm.split()[1]) * 1024, n)    # VmHWM: ru_maxrss would count the parent's pages before exec


def cores() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__" and sys.argv[1:2] == ["decode-client"]:
    decode_client(Path(sys.argv[2]))
