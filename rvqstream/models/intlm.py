"""The integer language model: parameters, constants and the numpy int64 reference of one step.

This module is the specification of the exact tier's probability model. Everything from token ids
to the arithmetic coder's cumulative frequency table is integer arithmetic: int8 weights (within
±64), int32 dot products, requantization by an integer multiply and a division by a power of two,
a mean-absolute-deviation normalization with integer division, and lookup tables for exp
(attention), GELU and from logit gaps to frequencies. Integer sums do not
depend on their order, so batch size, padding, threads, graph optimizations and the device cannot
change a table. The ONNX graphs in the bundle (``step.onnx`` for the CPU provider,
``step_cuda.onnx`` for CUDA) compute exactly ``reference_step``; the tests compare them.

Division is C division (truncation toward zero), as ONNX's integer ``Div``: ``tdiv`` below. Every
intermediate value fits int32 (the graphs compute in int32; this reference in int64).

Shapes: B rows, S new tokens per row, T cached positions, d width, H heads of dh dims, V vocabulary,
L layers, FF the feed-forward width. A step takes ``tokens`` [B,S], ``positions`` [B,S], per layer
the cached keys ``past_k`` [B,H,dh,T] (transposed) and values ``past_v`` [B,H,T,dh], int8, and an
additive ``bias`` [B,1,S,T+S] (0 = may attend, ``MASKED`` = may not), and returns the logit gaps
[B,S,V] int32 (how far each logit is below the row's best, clipped to the frequency table) and
the new keys [B,H,dh,S] and values [B,H,S,dh]. ``cumulative_tables`` turns gaps into the coder's
tables.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np

NORM_SCALE = 16            # a normalized activation of one mean absolute deviation = 16
ACT_MAX = 127              # int8 activations (the A operand of every integer matmul)
WEIGHT_MAX = 64            # int8 weights, keys and values (the B operand): u8 x s8 pairs never saturate int16
RESIDUAL_MAX = 1 << 20     # the residual stream is clipped to ±2**20 units (int32 sums never overflow)
MASKED = -(1 << 24)        # attention bias of a position that must not be attended
GAP_MAX = 1 << 20          # score gaps are clipped to this before they are rescaled
EXP_STEPS = 16             # attention: a rescaled score gap of one unit is 1/16 nat
EXP_SIZE = 256             # exp-table entries; the last is 0 (masked keys, gaps past 16 nats)
PROB_MAX = 127             # attention probabilities, 127 = all the mass


def _exp_table() -> np.ndarray:
    """[EXP_SIZE] int64: round(2**16 * exp(-i / EXP_STEPS)), the last entry 0."""
    t = np.floor(65536 * np.exp(-np.arange(EXP_SIZE) / EXP_STEPS) + 0.5).astype(np.int64)
    t[-1] = 0
    return t


EXP_TABLE = _exp_table()


@dataclass(frozen=True)
class Requant:
    """Integer rescaling of an int32 accumulator: ``tdiv(acc * mult, 2**shift)`` per channel."""

    mult: np.ndarray        # [N] int64, positive
    shift: int

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        return tdiv(acc.astype(np.int64) * self.mult, 1 << self.shift)


@dataclass(frozen=True)
class Linear:
    """``acc = x @ weight + bias`` (int8 x int8 -> int32), then ``requant``."""

    weight: np.ndarray      # [K,N] int8 within ±WEIGHT_MAX
    bias: np.ndarray        # [N] int32
    requant: Requant

    def __call__(self, x: np.ndarray) -> np.ndarray:
        acc = imatmul(x, self.weight) + self.bias
        return self.requant(acc)


@dataclass(frozen=True)
class Layer:
    """One transformer block: normalization, attention, normalization, feed-forward."""

    qkv: Linear             # d -> 3d: q within ±ACT_MAX, k and v within ±WEIGHT_MAX (clip bounds below)
    qkv_lo: np.ndarray      # [3d] int64
    qkv_hi: np.ndarray      # [3d] int64
    score: Requant          # [H] (max score - score) -> exp-table index
    attn_out: Requant       # [1] attention output (probabilities x values) -> int8
    proj: Linear            # d -> d, residual units
    ff1: Linear             # d -> FF, GELU-table index (clipped to ±ACT_MAX)
    gelu: np.ndarray        # [2*ACT_MAX+1] int32 within ±ACT_MAX: GELU of index i - ACT_MAX
    ff2: Linear             # FF -> d, residual units


@dataclass(frozen=True)
class IntLM:
    """Every integer parameter of the model (see the module docstring for the step)."""

    heads: int
    embed: np.ndarray       # [V,d] int32: token embeddings in residual units
    pos: np.ndarray         # [C,d] int32: position embeddings in residual units
    layers: tuple[Layer, ...]
    head: Linear            # d -> V: int32 logits (its requant is unused: one scale for all)
    freq_by_step: np.ndarray  # [n] int64: frequency of a symbol k logit units below the best, k < n

    @property
    def vocab(self) -> int:
        return self.embed.shape[0]

    @property
    def width(self) -> int:
        return self.embed.shape[1]

    @property
    def context(self) -> int:
        return self.pos.shape[0]

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def to_bytes(self) -> bytes:
        """The parameters as an ``.npz`` file (``lm.npz`` in the bundle)."""
        arrays = {"heads": np.array(self.heads), "embed": self.embed, "pos": self.pos,
                  "layers": np.array(len(self.layers)), "freq_by_step": self.freq_by_step}
        _put_linear(arrays, "head", self.head)
        for i, layer in enumerate(self.layers):
            for f in fields(Layer):
                v = getattr(layer, f.name)
                key = f"l{i}.{f.name}"
                if isinstance(v, Linear):
                    _put_linear(arrays, key, v)
                elif isinstance(v, Requant):
                    _put_requant(arrays, key, v)
                else:
                    arrays[key] = v
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> IntLM:
        z = np.load(io.BytesIO(data), allow_pickle=False)
        layers = []
        for i in range(int(z["layers"])):
            kw = {}
            for f in fields(Layer):
                key = f"l{i}.{f.name}"
                if f.type == "Linear":
                    kw[f.name] = _get_linear(z, key)
                elif f.type == "Requant":
                    kw[f.name] = _get_requant(z, key)
                else:
                    kw[f.name] = z[key]
            layers.append(Layer(**kw))
        return cls(int(z["heads"]), z["embed"], z["pos"], tuple(layers), _get_linear(z, "head"),
                   z["freq_by_step"])


def lm_info(data: bytes) -> dict:
    """What a runtime needs of an ``lm.npz`` besides its graph: layers, heads, head_dim, context
    and freq_by_step (the weights are not read)."""
    z = np.load(io.BytesIO(data), allow_pickle=False)
    heads, (context, width) = int(z["heads"]), z["pos"].shape
    return {"layers": int(z["layers"]), "heads": heads, "head_dim": width // heads, "context": context,
            "freq_by_step": z["freq_by_step"]}


def _put_requant(arrays: dict, key: str, r: Requant) -> None:
    arrays[f"{key}.mult"] = r.mult
    arrays[f"{key}.shift"] = np.array(r.shift)


def _get_requant(z, key: str) -> Requant:
    return Requant(z[f"{key}.mult"], int(z[f"{key}.shift"]))


def _put_linear(arrays: dict, key: str, lin: Linear) -> None:
    arrays[f"{key}.weight"] = lin.weight
    arrays[f"{key}.bias"] = lin.bias
    _put_requant(arrays, f"{key}.rq", lin.requant)


def _get_linear(z, key: str) -> Linear:
    return Linear(z[f"{key}.weight"], z[f"{key}.bias"], _get_requant(z, f"{key}.rq"))


def imatmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matrix product (int64) computed by floating-point BLAS (numpy's own int64
    matmul is far slower): when no partial sum can reach 2**24 (K * max|a| * max|b|), float32 holds
    every one exactly in any order of summation; else float64 (exact below 2**53)."""
    bound = a.shape[-1] * int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0))
    ftype = np.float32 if bound < 1 << 24 else np.float64
    return (a.astype(ftype) @ b.astype(ftype)).astype(np.int64)


def tdiv(a: np.ndarray, b) -> np.ndarray:
    """Integer division truncated toward zero (C and ONNX ``Div``), for positive ``b``."""
    a = np.asarray(a, np.int64)
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def normalize(x: np.ndarray) -> np.ndarray:
    """Residual [...,d] int64 -> int8 values [...,d] within ±ACT_MAX: centred, divided by the mean
    absolute deviation (plus one), times ``NORM_SCALE``. Gains and offsets live in the next layer."""
    d = x.shape[-1]
    xc = x - tdiv(x.sum(-1, keepdims=True), d)
    mad = tdiv(np.abs(xc).sum(-1, keepdims=True), d) + 1
    return np.clip(tdiv(xc * NORM_SCALE, mad), -ACT_MAX, ACT_MAX)


def allowed(bias: np.ndarray) -> np.ndarray:
    """1 where ``bias`` lets a query attend a key, 0 where it is ``MASKED``: a masked key weighs
    nothing, whatever the score's scale."""
    return 1 + tdiv(bias, -MASKED)


def attention(layer: Layer, heads: int, q, k_new, v_new, past_k, past_v, bias):
    """q [B,S,d], k/v [B,S,d] int8 values -> (output [B,S,d] int8, keys [B,H,dh,S], values [B,H,S,dh]).
    A key's weight is ``EXP_TABLE[g]`` for its rescaled score gap g to the best key (clipped to
    the table; 0 for a masked key), normalized to ``PROB_MAX`` with rounding."""
    B, S, d = q.shape
    dh = d // heads
    qh = q.reshape(B, S, heads, dh).transpose(0, 2, 1, 3)               # [B,H,S,dh]
    kt = k_new.reshape(B, S, heads, dh).transpose(0, 2, 3, 1)           # [B,H,dh,S]
    vh = v_new.reshape(B, S, heads, dh).transpose(0, 2, 1, 3)           # [B,H,S,dh]
    keys = np.concatenate([past_k.astype(np.int64), kt], axis=3)        # [B,H,dh,T+S]
    values = np.concatenate([past_v.astype(np.int64), vh], axis=2)      # [B,H,T+S,dh]
    scores = imatmul(qh, keys) + bias                                           # [B,H,S,T+S]
    gap = np.minimum(scores.max(-1, keepdims=True) - scores, GAP_MAX)
    g = tdiv(gap * layer.score.mult.reshape(1, heads, 1, 1), 1 << layer.score.shift)
    e = EXP_TABLE[np.minimum(g, EXP_SIZE - 1)] * allowed(bias)
    total = e.sum(-1, keepdims=True)
    p = tdiv(e * PROB_MAX + tdiv(total, 2), total)                      # [B,H,S,T+S] in 0..127
    o = imatmul(p, values).transpose(0, 2, 1, 3).reshape(B, S, d)
    o = np.clip(layer.attn_out(o), -ACT_MAX, ACT_MAX)
    return o, kt, vh


def reference_logits(lm: IntLM, tokens: np.ndarray, positions: np.ndarray, past_k: list, past_v: list,
                     bias: np.ndarray) -> tuple[np.ndarray, list, list]:
    """The step in numpy int64 (the specification; see the module docstring for shapes): ->
    (logits [B,S,V] int64, new keys per layer, new values per layer)."""
    x = lm.embed[tokens].astype(np.int64) + lm.pos[positions]
    d = lm.width
    new_k, new_v = [], []
    for layer, pk, pv in zip(lm.layers, past_k, past_v):
        qkv = np.clip(layer.qkv(normalize(x)), layer.qkv_lo, layer.qkv_hi)
        o, kt, vh = attention(layer, lm.heads, qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:],
                              pk, pv, bias)
        new_k.append(kt.astype(np.int8))
        new_v.append(vh.astype(np.int8))
        x = np.clip(x + layer.proj(o), -RESIDUAL_MAX, RESIDUAL_MAX)
        h = np.clip(layer.ff1(normalize(x)), -ACT_MAX, ACT_MAX)
        x = np.clip(x + layer.ff2(layer.gelu[h + ACT_MAX]), -RESIDUAL_MAX, RESIDUAL_MAX)
    y = normalize(x)
    logits = imatmul(y, lm.head.weight) + lm.head.bias
    return logits, new_k, new_v


def logit_gaps(logits: np.ndarray, table_size: int) -> np.ndarray:
    """Logits [...,V] -> how far each is below the best, clipped to ``table_size - 1`` (int32)."""
    return np.minimum(logits.max(-1, keepdims=True) - logits, table_size - 1).astype(np.int32)


def cumulative_tables(freq_by_step: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Gaps [...,V] -> cumulative frequency tables [...,V+1] int64 (``cum[...,0] == 0``): each
    symbol's frequency is ``freq_by_step[gap]`` (>= 1; the table int64 or int32)."""
    cum = np.zeros(gaps.shape[:-1] + (gaps.shape[-1] + 1,), np.int64)
    np.cumsum(freq_by_step.take(gaps), axis=-1, dtype=np.int64, out=cum[..., 1:])
    return cum


def symbol_ranges(freq_by_step: np.ndarray, gaps: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Gaps [...,V] and the symbols coded under them [...] -> each symbol's interval of its
    cumulative table, (low, high, total) [...,3] int64: ``cum[symbol]``, ``cum[symbol + 1]`` and
    ``cum[-1]`` of ``cumulative_tables`` (what an arithmetic encoder needs), for many at once.
    Each row is summed in two pieces, before its symbol and from it on (no cumulative table)."""
    V = gaps.shape[-1]
    freqs = freq_by_step.take(gaps).reshape(-1, V)
    at = np.asarray(symbols, np.int64).reshape(-1)
    rows = np.arange(len(at))
    starts = np.stack([rows * V, rows * V + at], -1).reshape(-1)
    pieces = np.add.reduceat(freqs.reshape(-1), starts, dtype=np.int64)
    # reduceat gives a piece that starts where the next one does the element there, not 0
    low = np.where(at == 0, 0, pieces[0::2])
    high = low + freqs[rows, at]
    return np.stack([low, high, low + pieces[1::2]], -1).reshape(gaps.shape[:-1] + (3,))


def reference_step(lm: IntLM, tokens, positions, past_k, past_v, bias) -> tuple[np.ndarray, list, list]:
    """-> (logit gaps [B,S,V] int32, new keys, new values): what the ONNX graphs output."""
    logits, new_k, new_v = reference_logits(lm, tokens, positions, past_k, past_v, bias)
    return logit_gaps(logits, len(lm.freq_by_step)), new_k, new_v
