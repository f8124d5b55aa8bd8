"""ONNX graphs of the integer language model's step (``rvqstream.models.intlm`` is the specification).

Two graphs of one function: ``cpu`` feeds every integer matmul an unsigned activation (value + 128,
zero point 128: ONNX Runtime's fast u8 x s8 path, exact because weights, keys and values stay within
±64), ``cuda`` a signed one (the CUDA provider's ``MatMulInteger`` is s8 x s8 only). Both use only
ops that both providers implement for these types: MatMulInteger, Gather, GatherElements, Cast, Add,
Sub, Mul, Div, Abs, Max, Min, ReduceSum, ReduceMax, Concat, Split, Slice, Shape, Reshape, Transpose
(and Clip on the CPU graph, for Max-then-Min with scalar bounds).

The key and value caches are the caller's: each step reads them whole (``[B,H,dh,T]`` and
``[B,H,T,dh]``, T = the context's positions) with a bias that masks the slots not in use, and
returns only the new keys and values, which the caller writes into its slots. Nothing is copied
per step but the scores.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rvqstream.models.intlm import (
    ACT_MAX,
    EXP_SIZE,
    EXP_TABLE,
    GAP_MAX,
    MASKED,
    NORM_SCALE,
    PROB_MAX,
    RESIDUAL_MAX,
    IntLM,
    Layer,
    Linear,
    Requant,
)

OPSET = 17
IR_VERSION = 8
VARIANTS = ("cpu", "cuda")
I32 = np.int32


class _Builder:
    """Accumulates nodes and initializers; every helper returns the name of its output."""

    def __init__(self, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        self.signed = variant == "cuda"
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._consts: dict = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def named(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        """A node whose output has the given name (a graph output)."""
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n: int, **attrs) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def const(self, value, dtype=I32, hint: str = "c") -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 16 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    # -- integer building blocks (each mirrors a function of rvqstream.models.intlm), all int32 --

    def clip(self, x: str, lo, hi) -> str:
        """Scalar bounds: one Clip on the CPU graph; Max and Min on the CUDA graph (whose provider's
        Clip kernels are not all integer types)."""
        if not self.signed:
            return self.op("Clip", [x, self.const(lo), self.const(hi)])
        return self.op("Min", [self.op("Max", [x, self.const(lo)]), self.const(hi)])

    def tdiv(self, x: str, divisor) -> str:
        return self.op("Div", [x, divisor if isinstance(divisor, str) else self.const(divisor)])

    def act(self, x: str) -> str:
        """int32 values within ±127 -> the A operand of MatMulInteger."""
        if self.signed:
            return self.op("Cast", [x], to=TensorProto.INT8)
        return self.op("Cast", [self.op("Add", [x, self.const(128)])], to=TensorProto.UINT8)

    def matmul(self, a: str, b: str) -> str:
        """A operand (from ``act``) x int8 B operand -> int32."""
        inputs = [a, b] if self.signed else [a, b, self.const(128, np.uint8, "zp")]
        return self.op("MatMulInteger", inputs)

    def lookup(self, table: np.ndarray, idx: str, hint: str) -> str:
        """``table[idx]`` element by element (an int32 table, int32 indices of any shape within it).
        A ``GatherElements`` over the flattened indices: ONNX Runtime's CPU ``Gather`` copies one
        element at a time with an integer division each (about 8 ns an element here), its
        ``GatherElements`` about ten times faster; both providers implement it for int32."""
        flat = self.op("Reshape", [idx, self.const([1, -1], np.int64)])
        out = self.op("GatherElements", [self.const(np.asarray(table)[None], I32, hint), flat], axis=1)
        return self.op("Reshape", [out, self.op("Shape", [idx])])

    def requant(self, acc: str, rq: Requant) -> str:
        return self.tdiv(self.op("Mul", [acc, self.const(rq.mult)]), 1 << rq.shift)

    def linear_acc(self, x: str, lin: Linear, hint: str) -> str:
        acc = self.matmul(self.act(x), self.const(lin.weight, np.int8, hint + "_w"))
        return self.op("Add", [acc, self.const(lin.bias, I32, hint + "_b")])

    def linear(self, x: str, lin: Linear, hint: str) -> str:
        return self.requant(self.linear_acc(x, lin, hint), lin.requant)

    def normalize(self, x: str, d: int) -> str:
        axes = self.const([-1], np.int64)
        mean = self.tdiv(self.op("ReduceSum", [x, axes], keepdims=1), d)
        xc = self.op("Sub", [x, mean])
        mad = self.tdiv(self.op("ReduceSum", [self.op("Abs", [xc]), axes], keepdims=1), d)
        mad = self.op("Add", [mad, self.const(1)])
        y = self.tdiv(self.op("Mul", [xc, self.const(NORM_SCALE)]), mad)
        return self.clip(y, -ACT_MAX, ACT_MAX)


def _attention(g: _Builder, layer: Layer, i: int, heads: int, d: int, qkv: str, bias: str, allowed: str):
    """-> the attention output [B,S,d] int32; the new keys [B,H,dh,S] and values [B,H,S,dh] (int8)
    are the graph outputs ``new_k{i}`` and ``new_v{i}``."""
    dh = d // heads
    q, k, v = g.ops("Split", [qkv, g.const([d, d, d], np.int64)], 3, axis=-1)
    shape = g.const([0, 0, heads, dh], np.int64)
    q = g.op("Transpose", [g.op("Reshape", [q, shape])], perm=[0, 2, 1, 3])          # [B,H,S,dh]
    kt = g.named("Cast", [g.op("Transpose", [g.op("Reshape", [k, shape])], perm=[0, 2, 3, 1])], f"new_k{i}",
                 to=TensorProto.INT8)                                                   # [B,H,dh,S]
    vh = g.named("Cast", [g.op("Transpose", [g.op("Reshape", [v, shape])], perm=[0, 2, 1, 3])], f"new_v{i}",
                 to=TensorProto.INT8)                                                   # [B,H,S,dh]
    qa = g.act(q)
    scores = g.op("Concat", [g.matmul(qa, f"past_k{i}"), g.matmul(qa, kt)], axis=-1)
    scores = g.op("Add", [scores, bias])                                             # [B,H,S,T+S]
    gap = g.op("Sub", [g.op("ReduceMax", [scores], axes=[-1], keepdims=1), scores])
    gap = g.op("Min", [gap, g.const(GAP_MAX)])
    rq = Requant(layer.score.mult.reshape(1, heads, 1, 1), layer.score.shift)
    idx = g.op("Min", [g.requant(gap, rq), g.const(EXP_SIZE - 1)])
    e = g.op("Mul", [g.lookup(EXP_TABLE, idx, "exp_table"), allowed])
    total = g.op("ReduceSum", [e, g.const([-1], np.int64)], keepdims=1)
    p = g.tdiv(g.op("Add", [g.op("Mul", [e, g.const(PROB_MAX)]), g.tdiv(total, 2)]), total)
    past_len = g.op("Shape", [f"past_v{i}"], start=2, end=3)
    pa = g.act(p)
    axis = g.const([-1], np.int64)
    p_past = g.op("Slice", [pa, g.const([0], np.int64), past_len, axis])
    p_new = g.op("Slice", [pa, past_len, g.const([1 << 30], np.int64), axis])
    o = g.op("Add", [g.matmul(p_past, f"past_v{i}"), g.matmul(p_new, vh)])          # [B,H,S,dh]
    o = g.op("Reshape", [g.op("Transpose", [o], perm=[0, 2, 1, 3]), g.const([0, 0, d], np.int64)])
    o = g.clip(g.requant(o, layer.attn_out), -ACT_MAX, ACT_MAX)
    return o


def build(lm: IntLM, variant: str = "cpu") -> bytes:
    """The step graph of ``lm`` for ``variant`` ("cpu" or "cuda"), serialized."""
    g = _Builder(variant)
    d, heads, dh, L = lm.width, lm.heads, lm.head_dim, len(lm.layers)
    i64, i32, i8 = TensorProto.INT64, TensorProto.INT32, TensorProto.INT8
    inputs = [helper.make_tensor_value_info("tokens", i64, ["B", "S"]),
              helper.make_tensor_value_info("positions", i64, ["B", "S"]),
              helper.make_tensor_value_info("bias", i32, ["B", 1, "S", "TS"])]
    outputs = [helper.make_tensor_value_info("gaps", i32, ["B", "S", lm.vocab])]
    for i in range(L):
        inputs += [helper.make_tensor_value_info(f"past_k{i}", i8, ["B", heads, dh, "T"]),
                   helper.make_tensor_value_info(f"past_v{i}", i8, ["B", heads, "T", dh])]
    emb = g.op("Gather", [g.const(lm.embed, I32, "embed"), "tokens"], axis=0)
    pos = g.op("Gather", [g.const(lm.pos, I32, "pos"), "positions"], axis=0)
    x = g.op("Add", [emb, pos])
    allowed = g.op("Add", [g.const(1), g.tdiv("bias", -MASKED)])     # 1: may attend, 0: masked
    for i, layer in enumerate(lm.layers):
        qkv = g.linear(g.normalize(x, d), layer.qkv, f"l{i}_qkv")
        qkv = g.op("Min", [g.op("Max", [qkv, g.const(layer.qkv_lo)]), g.const(layer.qkv_hi)])
        o = _attention(g, layer, i, heads, d, qkv, "bias", allowed)
        outputs += [helper.make_tensor_value_info(f"new_k{i}", i8, ["B", heads, dh, "S"]),
                    helper.make_tensor_value_info(f"new_v{i}", i8, ["B", heads, "S", dh])]
        x = g.clip(g.op("Add", [x, g.linear(o, layer.proj, f"l{i}_proj")]), -RESIDUAL_MAX, RESIDUAL_MAX)
        h = g.clip(g.linear(g.normalize(x, d), layer.ff1, f"l{i}_ff1"), -ACT_MAX, ACT_MAX)
        h = g.lookup(layer.gelu, g.op("Add", [h, g.const(ACT_MAX)]), f"l{i}_gelu")
        x = g.clip(g.op("Add", [x, g.linear(h, layer.ff2, f"l{i}_ff2")]), -RESIDUAL_MAX, RESIDUAL_MAX)
    logits = g.linear_acc(g.normalize(x, d), lm.head, "head")
    gaps = g.op("Sub", [g.op("ReduceMax", [logits], axes=[-1], keepdims=1), logits])
    g.nodes.append(helper.make_node("Min", [gaps, g.const(len(lm.freq_by_step) - 1)], ["gaps"]))
    graph = helper.make_graph(g.nodes, f"rvqstream_intlm_{variant}", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="rvqstream")
    onnx.checker.check_model(model)
    return model.SerializeToString()
