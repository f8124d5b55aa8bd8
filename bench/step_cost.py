"""What one integer-model step costs on one core, and where the time goes.

Run pinned to one core: ``taskset -c 0 python bench/step_cost.py [--graph step_cuda.onnx]``. ONNX
Runtime's CPU provider runs the shipped ``step.onnx`` (or ``--graph``, e.g. the CUDA graph with
its s8 x s8 matmuls) on one thread at each shape below (B rows, S new tokens a row, T cached slots: a
decoder's single step, a backlog's batched step, an encoder's frame, the server's batched frames)
and reports the median time of a call and per token, and the kernel time by op type from ONNX
Runtime's profiler (a separate, profiled session: profiling slows every call down, so its figures
are shares, not times). It also times the two ways to look up a table element by element,
``Gather`` (the graph's lookups before) and ``GatherElements`` (now), on the same indices.

``depth_bound`` answers what a shallower model of this family could decode at most: the shipped
model's graph rebuilt (``models/intlm_graph.py``) with its first L layers only (L = 0: embeddings,
the last normalization and the output layer), timed at the decoder's step and the backlog's; text
bytes a second at most = the test messages' UTF-8 bytes a token (EOS counted) / the step's time a
token, as if nothing but the graph ran.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from edge_decode import OLD_SOURCES, sample
from onnx import TensorProto, helper, numpy_helper

from rvqstream.models import Codec
from rvqstream.models.int_runtime import frame_bias
from rvqstream.models.intlm import IntLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.intlm_graph import build  # the repository's export code (onnx, numpy: no torch)

DEPTH_SHAPES = {"decoder step (B=1, S=1, T=16)": (1, 1, 16), "backlog step (B=64, S=1, T=64)": (64, 1, 64)}
SHAPES = {"decoder step (B=1, S=1, T=16)": (1, 1, 16),
          "decoder step, long context (B=1, S=1, T=240)": (1, 1, 240),
          "encoder frame (B=1, S=16, T=240)": (1, 16, 240),
          "backlog step (B=64, S=1, T=64)": (64, 1, 64),
          "backlog step, long contexts (B=64, S=1, T=240)": (64, 1, 240),
          "server frames (B=64, S=5, T=240)": (64, 5, 240)}


def feeds(layers: int, heads: int, head_dim: int, B: int, S: int, T: int, rng) -> dict:
    """Inputs of a call: every cached slot in use, each new token sees the ones before it."""
    out = {"tokens": rng.integers(1, 4096, (B, S)), "positions": np.tile(np.arange(T, T + S), (B, 1)),
           "bias": frame_bias(np.full(B, T), T, S)}
    for i in range(layers):
        out[f"past_k{i}"] = rng.integers(-64, 65, (B, heads, head_dim, T)).astype(np.int8)
        out[f"past_v{i}"] = rng.integers(-64, 65, (B, heads, T, head_dim)).astype(np.int8)
    return out


def timed(sess: ort.InferenceSession, inputs: dict, repeats: int) -> float:
    """Median seconds of a call (after two warm-up calls)."""
    for _ in range(2):
        sess.run(None, inputs)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, inputs)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def op_shares(graph: bytes, inputs: dict, calls: int) -> dict[str, float]:
    """Share of kernel time by op type (ONNX Runtime's profiler), largest first."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="rvqstream-prof-"), "step")
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        sess.run(None, inputs)
    path = sess.end_profiling()
    by_op: collections.Counter = collections.Counter()
    for e in json.loads(Path(path).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    os.remove(path)
    total = sum(by_op.values())
    return {op: round(d / total, 3) for op, d in by_op.most_common()}


def lookup_ns(n: int, repeats: int) -> dict[str, float]:
    """ns an element of a 255-entry int32 table looked up at ``n`` int32 indices: ``Gather`` on the
    table, ``GatherElements`` on the table as [1,255] with the indices as [1,n]."""
    rng = np.random.default_rng(0)
    table = (np.arange(255, dtype=np.int32) * 3 - 300)
    idx = rng.integers(0, 255, n).astype(np.int32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    out = {}
    for name, op, data, shape in (("Gather", "Gather", table, [n]), ("GatherElements", "GatherElements",
                                                                      table[None], [1, n])):
        node = helper.make_node(op, ["t", "x"], ["y"], axis=0 if op == "Gather" else 1)
        graph = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.INT32, shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                                  [numpy_helper.from_array(data, "t")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        out[name] = round(timed(sess, {"x": idx.reshape(shape)}, repeats) / n * 1e9, 2)
    return out


def bytes_per_token(codec: Codec, split: Path, per_source: int = 20) -> float:
    """UTF-8 bytes a token (a message's EOS counted) over ``bench/edge_decode.py``'s sample: the
    first ``per_source`` test messages of each of the six old sources."""
    texts = sample(split, per_source, OLD_SOURCES)
    return sum(len(t.encode()) for t in texts) / sum(len(codec.parts.tokenizer.encode(t)) + 1 for t in texts)


def depth_bound(lm: IntLM, byte_rate: float, repeats: int) -> dict:
    """For each depth L = 0..layers: graph nodes, and at each ``DEPTH_SHAPES`` shape the median us a
    token and the kB/s of text it would allow (``byte_rate`` bytes a token) with nothing else running."""
    rng = np.random.default_rng(0)
    out = {}
    for depth in range(len(lm.layers) + 1):
        graph = build(dataclasses.replace(lm, layers=lm.layers[:depth]))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
        row = {"graph_nodes": len(onnx.load_from_string(graph).graph.node)}
        for name, (B, S, T) in DEPTH_SHAPES.items():
            us = timed(sess, feeds(depth, lm.heads, lm.head_dim, B, S, T, rng), repeats) / (B * S) * 1e6
            row[name] = {"us_per_token": round(us, 1), "kB_per_s_at_most": round(byte_rate / us * 1e3, 1)}
        out[f"{depth} layers"] = row
        print(f"{depth} layers: {row}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--graph", choices=["step.onnx", "step_cuda.onnx"], default="step.onnx")
    ap.add_argument("--split", type=Path, default=ROOT / "data" / "test.jsonl",
                    help="test messages for the bytes a token of the depth bound")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "step_cost.json")
    args = ap.parse_args()
    codec = Codec.load()
    graph = codec.bundle_files()[args.graph]
    step = codec.parts.step
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    shapes = {}
    for name, (B, S, T) in SHAPES.items():
        inputs = feeds(step.layers, step.heads, step.head_dim, B, S, T, rng)
        s = timed(sess, inputs, args.repeats)
        shapes[name] = {"ms_per_call": round(s * 1e3, 3), "us_per_token": round(s / (B * S) * 1e6, 1),
                        "kernel_time_by_op": op_shares(graph, inputs, 10)}
        print(f"{name}: {s * 1e3:.2f} ms a call, {s / (B * S) * 1e6:.1f} us a token", flush=True)
    out = {"model_id": codec.model_id, "graph": args.graph, "cpu_affinity": sorted(os.sched_getaffinity(0)),
           "onnxruntime": ort.__version__, "graph_nodes": len(onnx.load_from_string(graph).graph.node),
           "shapes": shapes,
           "table_lookup_ns_per_element": lookup_ns(200_000, args.repeats)}
    if args.graph == "step.onnx":
        rate = bytes_per_token(codec, args.split)
        out["depth_bound"] = {"bytes_per_token": round(rate, 3),
                              "by_depth": depth_bound(IntLM.from_bytes(codec.bundle_files()["lm.npz"]), rate,
                                                      args.repeats)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "shapes"}, indent=1))


if __name__ == "__main__":
    main()
