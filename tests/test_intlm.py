"""The integer model is bit-exact everywhere: its ONNX graphs against the numpy int64 reference,
a frame in one call against one token a call against batch rows in any order with padding, every
thread count and optimization level, the CUDA graph's arithmetic, the bundle's golden hash; the
graphs use only ops both providers implement; blobs coded one way decode every other way; and the
training code, on a tiny model, exports a bundle whose graph matches the reference."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rvqstream.models import Codec
from rvqstream.models.bundle import DEFAULT_DIR
from rvqstream.models.int_runtime import IntStepModel, call_groups
from rvqstream.models.intlm import MASKED, IntLM, cumulative_tables, reference_step, symbol_ranges
from rvqstream.models.runtime import SessionSettings
from rvqstream.models.selfcheck import digest, golden_contexts, graph_gaps, reference_gaps
from rvqstream.models.tokenizer import EOS_ID

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.load()


@pytest.fixture(scope="module")
def lm(codec) -> IntLM:
    return IntLM.from_bytes(codec.bundle_files()["lm.npz"])


def _texts() -> list[str]:
    base = ["hello", "The quick brown fox jumps over the lazy dog. " * 12,
            '{"id": 7, "name": "sensor-3", "reading": 21.5, "unit": "C"}',
            "Ünïcödé 🙂 漢字 — and a tab\there", "x" * 700,
            "2026-11-30 04:10:06 ERROR worker-2 request 9f1c timed out after 30.0 s"]
    rng = random.Random(5)
    words = ["codec", "stream", "frame", "token", "model", "integer", "batch", "table", "exact", "residual"]
    base += [" ".join(rng.choice(words) for _ in range(rng.randint(3, 120))) for _ in range(20)]
    return base


def test_reference_and_graph_match_the_golden_hash(codec, lm):
    assert digest(reference_gaps(lm, golden_contexts(codec.parts.tokenizer, lm.context))) == \
        codec.manifest["golden_tables_sha256"]
    assert codec.selfcheck() == {"frames": True, "steps": True, "rows": True}


def test_graph_matches_reference_with_cache_and_masks(codec, lm):
    """Random caches, positions and masks (rows of a batch in the middle of their contexts)."""
    rng = np.random.default_rng(3)
    B, S, T, h, dh = 3, 4, lm.context, lm.heads, lm.head_dim
    tokens = rng.integers(0, lm.vocab, (B, S))
    positions = rng.integers(0, T - S, (B, 1)) + np.arange(S)
    keys = [rng.integers(-64, 65, (B, h, dh, T)).astype(np.int8) for _ in lm.layers]
    values = [rng.integers(-64, 65, (B, h, T, dh)).astype(np.int8) for _ in lm.layers]
    bias = np.where(rng.random((B, 1, S, T + S)) < 0.6, 0, MASKED).astype(np.int32)
    bias[..., T:] = np.where(np.arange(S)[None, :] <= np.arange(S)[:, None], 0, MASKED)
    want_gaps, want_k, want_v = reference_step(lm, tokens, positions, keys, values, bias)
    gaps, k, v = codec.parts.step.run(tokens, positions, keys, values, bias)
    assert np.array_equal(gaps, want_gaps)
    assert all(np.array_equal(a, b) for a, b in zip(k + v, want_k + want_v))


def test_batch_rows_in_any_order_with_padding_equal_single_contexts(codec):
    step = codec.parts.step
    contexts = golden_contexts(codec.parts.tokenizer, step.context)
    alone = graph_gaps(step, contexts, "steps")
    order = [3, 0, 5, 1, 4, 2]
    rows = step.rows(len(order) + 3)            # three rows never used: padding with stale slots
    for r in rows.states:
        r.length = 7
    for r in range(len(order)):
        rows.states[r].reset()
        rows.states[r].last_token = contexts[order[r]][0]
    got: list[list[np.ndarray]] = [[] for _ in order]
    for t in range(max(map(len, contexts))):
        live = [r for r in range(len(order)) if t < len(contexts[order[r]])]
        live.reverse()                           # rows listed in any order
        g = rows.step_gaps(live)
        for i, r in enumerate(live):
            got[r].append(g[i])
            ctx = contexts[order[r]]
            step.advance(rows.states[r], ctx[t + 1] if t + 1 < len(ctx) else EOS_ID, None)
    for r, c in enumerate(order):
        assert np.array_equal(np.stack(got[r]), alone[c])


def test_symbol_ranges_are_the_cumulative_tables_intervals(lm):
    rng = np.random.default_rng(5)
    gaps = rng.integers(0, len(lm.freq_by_step), (3, 4, lm.vocab)).astype(np.int32)
    symbols = rng.integers(0, lm.vocab, (3, 4))
    symbols[0, 0], symbols[0, 1] = 0, lm.vocab - 1              # the first and the last symbol
    cum = cumulative_tables(lm.freq_by_step, gaps)
    got = symbol_ranges(lm.freq_by_step, gaps, symbols)
    want = np.stack([np.take_along_axis(cum, symbols[..., None], -1)[..., 0],
                     np.take_along_axis(cum, symbols[..., None] + 1, -1)[..., 0], cum[..., -1]], -1)
    assert np.array_equal(got, want)
    narrow = lm.freq_by_step.astype(np.int32)          # the runtime's table: the same intervals
    assert np.array_equal(symbol_ranges(narrow, gaps, symbols), want)
    assert np.array_equal(cumulative_tables(narrow, gaps), cum)


def test_call_groups_split_rows_only_where_padding_costs_more_than_a_call():
    # a short flush among full frames would be padded to a full frame: it gets its own call
    assert sorted(map(sorted, call_groups([16] * 63 + [1], [200] * 64, 256))) == [list(range(63)), [63]]
    # similar lengths share one call; every row is in exactly one call
    groups = call_groups([5, 6, 5, 6], [10, 20, 30, 40], 256)
    assert groups == [[0, 2, 1, 3]]
    sizes = [1, 16, 3, 16, 2, 9, 9, 16, 1, 5] * 6
    groups = call_groups(sizes, list(range(len(sizes))), 256)
    assert sorted(b for g in groups for b in g) == list(range(len(sizes)))


def test_frames_of_mixed_lengths_in_one_call_equal_frames_alone(codec):
    """Many contexts' frames of different lengths (split into calls by length) give each context
    the intervals and the context it gets alone."""
    step, tok = codec.parts.step, codec.parts.tokenizer
    texts = _texts()[:12]
    sizes = [1, 16, 3, 16, 2, 9, 9, 16, 1, 5, 12, 4]
    alone_states, batch_states, symbol_lists = [], [], []
    for text, size in zip(texts, sizes):
        ids = tok.encode(text)
        prefix, symbols = ids[:len(ids) % 40], ids[len(ids) % 40:][:size] or [EOS_ID]
        a, b = step.new_state(), step.new_state()
        if prefix:
            step.frame(a, prefix)
            step.frame(b, prefix)
        alone_states.append(a)
        batch_states.append(b)
        symbol_lists.append(symbols)
    alone = [step.frame(st, syms) for st, syms in zip(alone_states, symbol_lists)]
    together = step.frames(batch_states, symbol_lists)
    assert together == alone
    for a, b in zip(alone_states, batch_states):
        assert (a.length, a.last_token) == (b.length, b.last_token)
        assert all(np.array_equal(x[..., :a.length], y[..., :b.length]) for x, y in zip(a.keys, b.keys))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.name)
def test_threads_and_optimization_levels(codec, threads, level):
    step = IntStepModel(codec.bundle_files()["step.onnx"], _info(codec),
                        SessionSettings(threads=threads, optimization=level))
    contexts = golden_contexts(codec.parts.tokenizer, step.context)
    assert digest(graph_gaps(step, contexts, "frames")) == codec.manifest["golden_tables_sha256"]


def test_cuda_graph_computes_the_same_tables(codec):
    """The CUDA provider's graph (signed activations) run by the CPU provider: the same function."""
    step = IntStepModel(codec.bundle_files()["step_cuda.onnx"], _info(codec), SessionSettings())
    contexts = golden_contexts(codec.parts.tokenizer, step.context)
    assert digest(graph_gaps(step, contexts, "frames")) == codec.manifest["golden_tables_sha256"]


# ops (ai.onnx, opset 17) with kernels for the types these graphs use in both ONNX Runtime's CPU and
# CUDA providers (docs/OperatorKernels.md of onnxruntime); Clip's integer kernels are CPU-only
BOTH_PROVIDERS = {"MatMulInteger", "Gather", "GatherElements", "Cast", "Add", "Sub", "Mul", "Div", "Abs",
                  "Max", "Min", "ReduceSum", "ReduceMax", "Concat", "Split", "Slice", "Shape", "Reshape",
                  "Transpose"}


@pytest.mark.parametrize("graph, extra, a_type", [("step.onnx", {"Clip"}, "uint8"),
                                                   ("step_cuda.onnx", set(), "int8")])
def test_graphs_use_only_ops_their_providers_implement(codec, graph, extra, a_type):
    """Every node's op has a kernel in the provider(s) the graph is for; the CUDA graph's
    MatMulInteger is s8 x s8 (CUDA's only kind), the CPU graph's u8 x s8 (its fast path)."""
    import onnx
    from onnx import TensorProto, shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(codec.bundle_files()[graph]))
    allowed = BOTH_PROVIDERS | extra if graph == "step.onnx" else BOTH_PROVIDERS
    assert {n.op_type for n in model.graph.node} <= allowed
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types |= {t.name: t.data_type for t in model.graph.initializer}
    types |= {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert matmuls
    for n in matmuls:
        assert TensorProto.DataType.Name(types[n.input[0]]).lower() == a_type
        assert types[n.input[1]] == TensorProto.INT8


def _info(codec: Codec) -> dict:
    from rvqstream.models.intlm import lm_info
    return lm_info(codec.bundle_files()["lm.npz"])


def test_blobs_coded_by_frames_decode_by_steps_and_by_rows(codec):
    texts = _texts()
    blobs = [codec.compress(t) for t in texts]
    assert [codec.decompress(b) for b in blobs] == texts
    assert codec.decompress_many(blobs) == texts
    shuffled = list(zip(texts, blobs))
    random.Random(1).shuffle(shuffled)
    assert codec.decompress_many([b for _, b in shuffled]) == [t for t, _ in shuffled]


def test_batched_calls_run_in_a_session_a_decoder_never_makes(codec, builtin_messages):
    """One-token steps keep a session of their own; frames and batches run in a second one, made
    at the first such call (a client that only decodes one message at a time never pays for it)."""
    texts = [m["text"] for m in builtin_messages[:3]]
    blobs = [codec.compress(t) for t in texts]
    fresh = Codec.load()
    assert [fresh.decompress(b) for b in blobs] == texts
    assert fresh.parts.step._many is None
    assert fresh.compress(texts[0]) == blobs[0]          # a lone frame: the batches' session
    assert fresh.parts.step._many is not None
    assert fresh.decompress_many(blobs) == texts


def test_decompress_many_reports_each_bad_blob_and_decodes_the_rest(codec):
    from rvqstream.models.errors import CodecError, TooLargeError

    texts = _texts()[:8]
    blobs = [codec.compress(t) for t in texts]
    blobs[1] = blobs[1][:-2] + bytes([blobs[1][-2] ^ 0x40, blobs[1][-1]])
    blobs[4] = blobs[4][:3]
    out = codec.decompress_many(blobs)
    assert isinstance(out[1], CodecError) and isinstance(out[4], CodecError)
    assert [o for i, o in enumerate(out) if i not in (1, 4)] == [t for i, t in enumerate(texts) if i not in (1, 4)]
    long = codec.decompress_many([codec.compress("y" * 3000)], max_bytes=100)
    assert isinstance(long[0], TooLargeError)


def test_frame_and_step_paths_agree_across_a_keyframe(codec, builtin_messages):
    """A message longer than one context: the encoder's frames and the decoder's steps reset
    together at the keyframe."""
    text = "\n\n".join(m["text"] for m in builtin_messages[:40])
    assert len(codec.parts.tokenizer.encode(text)) > 300
    blob = codec.compress(text)
    assert codec.blob_mode(blob).name == "EXACT"
    assert codec.decompress(blob) == text and codec.decompress_many([blob, blob]) == [text, text]


def test_tiny_model_trains_resumes_and_exports_a_bundle_matching_the_reference(tmp_path, builtin_messages):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    data.mkdir()
    msgs = builtin_messages
    for split, rows in (("train", msgs), ("valid", msgs[::5])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "models.train_intlm", "--data", str(data), "--out", str(run),
           "--tokenizer", str(DEFAULT_DIR / "tokenizer.json"), "--minutes", "2", "--batch-tokens", "512",
           "--threads", "1", "--eval-msgs", "10",
           "--scratch", json.dumps({"d": 32, "layers": 1, "heads": 2, "ff": 64})]
    subprocess.run(cmd + ["--max-steps", "3"], check=True, capture_output=True, cwd=ROOT)
    subprocess.run(cmd + ["--max-steps", "6", "--resume"], check=True, capture_output=True, cwd=ROOT)
    info = json.loads((run / "train_info.json").read_text())
    assert info["steps"] == 6 and all(np.isfinite(v) for v in info["valid_bpb_qat"].values())
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "models.export_intlm", "--lm", str(run / "lm.npz"), "--out", str(bundle),
                    "--from-bundle", str(DEFAULT_DIR)], check=True, capture_output=True, cwd=ROOT)
    tiny = Codec.load(bundle)
    assert tiny.selfcheck() == {"frames": True, "steps": True, "rows": True}
    texts = [m["text"] for m in msgs[:12]]
    assert tiny.decompress_many([tiny.compress(t) for t in texts]) == texts
