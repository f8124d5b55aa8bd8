"""Quantization-aware training of the integer language model (``rvqstream.models.intlm``).

``QatLM`` computes the integer step in float tensors that hold integers: every rounding and
truncation of the integer model happens in the forward pass, with straight-through gradients
(Ballé et al. 2019; I-BERT). Weights stay float and are quantized on the fly (per output channel,
within ±64); activation units are fixed by calibration on the float model. ``export`` turns it into
the ``IntLM`` parameters of the shipped bundle; its tables then come from the integer arithmetic
alone.

Shapes: B rows, T positions, d width, H heads of dh dims, V vocabulary, FF feed-forward width.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rvqstream.models.intlm import (
    ACT_MAX,
    EXP_SIZE,
    EXP_STEPS,
    GAP_MAX,
    NORM_SCALE,
    PROB_MAX,
    RESIDUAL_MAX,
    WEIGHT_MAX,
    IntLM,
    Layer,
    Linear,
    Requant,
)

MAD_PER_SIGMA = math.sqrt(2 / math.pi)   # mean absolute deviation of a unit Gaussian


def ste_round(x):
    return x + (torch.round(x) - x).detach()


def ste_trunc(x):
    return x + (torch.trunc(x) - x).detach()


def ste_clip(x, lo, hi):
    return torch.clamp(x, lo, hi)


def quantize_columns(w, per_column: bool = True):
    """float [K,N] -> (int-valued [K,N] within ±WEIGHT_MAX, step [N] (or [1]) float)."""
    m = w.detach().abs().amax(0) if per_column else w.detach().abs().amax().reshape(1)
    step = m.clamp(min=1e-8) / WEIGHT_MAX
    return torch.clamp(ste_round(w / step), -WEIGHT_MAX, WEIGHT_MAX), step


class QLinear(nn.Module):
    """A linear layer applied to int8 values of unit ``in_unit`` (after a normalization: the
    normalized value times ``gain``/``offset``, folded in), whose int32 result is requantized to
    ``out_unit`` per output channel."""

    def __init__(self, k: int, n: int, normalized: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(k, n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.normalized = normalized
        if normalized:
            self.gain = nn.Parameter(torch.ones(k))
            self.offset = nn.Parameter(torch.zeros(k))

    def folded(self, in_unit: float):
        """-> (weight [K,N], bias [N]) acting on the int8 values."""
        if self.normalized:
            scale = self.gain * (MAD_PER_SIGMA / NORM_SCALE)
            return self.weight * scale[:, None], self.bias + self.offset @ self.weight
        return self.weight * in_unit, self.bias

    def acc(self, x, in_unit: float, per_column: bool = True):
        """int8 values [...,K] -> (int32 accumulator [...,N], real value of one unit [N])."""
        w, b = self.folded(in_unit)
        wq, step = quantize_columns(w, per_column)
        return x @ wq + ste_round(b / step), step

    def forward(self, x, in_unit: float, out_unit):
        acc, step = self.acc(x, in_unit)
        return ste_trunc(acc * (step / out_unit))


def normalize(x):
    """Residual units [...,d] -> int8 values (``intlm.normalize``)."""
    d = x.shape[-1]
    xc = x - ste_trunc(x.sum(-1, keepdim=True) / d)
    mad = ste_trunc(xc.abs().sum(-1, keepdim=True) / d) + 1
    return torch.clamp(ste_trunc(xc * NORM_SCALE / mad), -ACT_MAX, ACT_MAX)


def gelu_int(h, in_unit: float, out_unit: float):
    """int8 values of unit ``in_unit`` -> GELU in int8 values of unit ``out_unit`` (the table)."""
    return torch.clamp(ste_round(F.gelu(h * in_unit, approximate="tanh") / out_unit), -ACT_MAX, ACT_MAX)


class QBlock(nn.Module):
    def __init__(self, d: int, ff: int, heads: int):
        super().__init__()
        self.h = heads
        self.qkv = QLinear(d, 3 * d, normalized=True)
        self.proj = QLinear(d, d, normalized=False)
        self.ff1 = QLinear(d, ff, normalized=True)
        self.ff2 = QLinear(ff, d, normalized=False)

    def forward(self, x, units: dict, causal):
        B, T, d = x.shape
        H, dh = self.h, d // self.h
        out_unit = torch.cat([torch.full((d,), units["q"]), torch.full((d,), units["k"]),
                              torch.full((d,), units["v"])]).to(x.device)
        qkv = self.qkv(normalize(x), 0.0, out_unit)
        q = torch.clamp(qkv[..., :d], -ACT_MAX, ACT_MAX)
        k = torch.clamp(qkv[..., d:2 * d], -WEIGHT_MAX, WEIGHT_MAX)
        v = torch.clamp(qkv[..., 2 * d:], -WEIGHT_MAX, WEIGHT_MAX)
        q, k, v = (t.view(B, T, H, dh).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2)                                   # [B,H,T,T]
        scores = scores.masked_fill(~causal, -float(GAP_MAX))
        gap = torch.clamp(scores.amax(-1, keepdim=True).detach() - scores, max=GAP_MAX)
        g = torch.clamp(ste_trunc(gap * units["score"]), max=EXP_SIZE - 1)
        e = ste_round(65536 * torch.exp(-g / EXP_STEPS)) * (causal & (g < EXP_SIZE - 1))
        total = e.sum(-1, keepdim=True)
        p = e * PROB_MAX / total
        p = p + (torch.trunc((e * PROB_MAX + torch.trunc(total / 2)) / total) - p).detach()
        o = (p @ v).transpose(1, 2).reshape(B, T, d)
        o = torch.clamp(ste_trunc(o * units["attn_out"]), -ACT_MAX, ACT_MAX)
        x = torch.clamp(x + self.proj(o, units["o"], units["r"]), -RESIDUAL_MAX, RESIDUAL_MAX)
        h = torch.clamp(self.ff1(normalize(x), 0.0, units["h"]), -ACT_MAX, ACT_MAX)
        g = gelu_int(h, units["h"], units["g"])
        return torch.clamp(x + self.ff2(g, units["g"], units["r"]), -RESIDUAL_MAX, RESIDUAL_MAX)


class QatLM(nn.Module):
    """The integer LM with float weights: ``forward`` gives logits in nats [B,T,V]."""

    def __init__(self, vocab: int = 4096, d: int = 256, layers: int = 3, heads: int = 4, ff: int = 1024,
                 context: int = 256):
        super().__init__()
        self.heads = heads
        self.tok_emb = nn.Parameter(torch.zeros(vocab, d))
        self.pos_emb = nn.Parameter(torch.zeros(context, d))
        self.blocks = nn.ModuleList(QBlock(d, ff, heads) for _ in range(layers))
        self.gain_f = nn.Parameter(torch.ones(d))
        self.offset_f = nn.Parameter(torch.zeros(d))
        self.head_bias = nn.Parameter(torch.zeros(vocab))
        self.units: dict = {}       # activation units, set by ``calibrate``

    def head_folded(self):
        w = (self.tok_emb * (self.gain_f * (MAD_PER_SIGMA / NORM_SCALE))).T      # [d,V]
        return w, self.head_bias + self.tok_emb @ self.offset_f

    def forward(self, tokens):
        T = tokens.shape[1]
        u = self.units
        x = ste_round(self.tok_emb[tokens] / u["r"]) + ste_round(self.pos_emb[:T] / u["r"])[None]
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
        for b in self.blocks:
            x = b(x, u, causal)
        w, bias = self.head_folded()
        wq, step = quantize_columns(w, per_column=False)
        acc = normalize(x) @ wq + ste_round(bias / step)
        return acc * step

    # -- from the float model, and calibration --

    @torch.no_grad()
    def load_float(self, sd: dict) -> None:
        """Weights of the float ``models.model.CodecModel`` decoder (state dict names)."""
        self.tok_emb.copy_(sd["tok_emb.weight"])
        self.pos_emb.copy_(sd["pos_emb.weight"])
        for i, b in enumerate(self.blocks):
            p = f"blocks.{i}."
            for lin, name, ln in ((b.qkv, "qkv", "ln1"), (b.proj, "proj", None), (b.ff1, "ff1", "ln2"),
                                  (b.ff2, "ff2", None)):
                lin.weight.copy_(sd[p + name + ".weight"].T)
                lin.bias.copy_(sd[p + name + ".bias"])
                if ln:
                    lin.gain.copy_(sd[p + ln + ".weight"])
                    lin.offset.copy_(sd[p + ln + ".bias"])
        self.gain_f.copy_(sd["ln_f.weight"])
        self.offset_f.copy_(sd["ln_f.bias"])

    @torch.no_grad()
    def calibrate(self, stats: dict) -> None:
        """Activation units from the float model's magnitudes (``float_stats``)."""
        dh = self.tok_emb.shape[1] // self.heads
        u = {"r": stats["r"] * 2 / RESIDUAL_MAX, "q": stats["q"] / ACT_MAX, "k": stats["k"] / WEIGHT_MAX,
             "v": stats["v"] / WEIGHT_MAX, "o": stats["o"] / ACT_MAX, "h": stats["h"] / ACT_MAX,
             "g": stats["g"] / ACT_MAX}
        # one score unit is q * k / sqrt(dh) nats; an exp-table step is 1 / EXP_STEPS nat
        u["score"] = u["q"] * u["k"] / math.sqrt(dh) * EXP_STEPS
        u["attn_out"] = u["v"] / (PROB_MAX * u["o"])
        self.units = {k: float(v) for k, v in u.items()}


@torch.no_grad()
def float_stats(sd: dict, tokens, heads: int = 4, q: float = 0.9999) -> dict:
    """Magnitudes (quantile ``q`` of |x|) of the float decoder's activations on ``tokens`` [B,T]:
    residual r, queries q, keys k, values v, attention output o, feed-forward pre-activation h and
    its GELU g."""
    T = tokens.shape[1]
    x = sd["tok_emb.weight"][tokens] + sd["pos_emb.weight"][:T][None]
    B, d = x.shape[0], x.shape[-1]
    acc = {k: [] for k in "rqkvohg"}

    def split_heads(t):
        return t.view(B, T, heads, d // heads).transpose(1, 2)

    for i in range(sum(1 for k in sd if k.endswith(".qkv.weight") and k.startswith("blocks."))):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (d,), sd[p + "ln1.weight"], sd[p + "ln1.bias"])
        qkv = h @ sd[p + "qkv.weight"].T + sd[p + "qkv.bias"]
        qq, kk, vv = qkv.split(d, -1)
        o = F.scaled_dot_product_attention(split_heads(qq), split_heads(kk), split_heads(vv), is_causal=True)
        o = o.transpose(1, 2).reshape(B, T, d)
        x = x + o @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]
        h = F.layer_norm(x, (d,), sd[p + "ln2.weight"], sd[p + "ln2.bias"])
        pre = h @ sd[p + "ff1.weight"].T + sd[p + "ff1.bias"]
        act = F.gelu(pre, approximate="tanh")
        x = x + act @ sd[p + "ff2.weight"].T + sd[p + "ff2.bias"]
        for k, t in (("r", x), ("q", qq), ("k", kk), ("v", vv), ("o", o), ("h", pre), ("g", act)):
            acc[k].append(t.abs().flatten().float())
    out = {k: float(torch.quantile(torch.cat(v)[:2_000_000], q)) for k, v in acc.items()}
    out["r"] = float(torch.cat(acc["r"]).max()) * 2      # the residual stream: its maximum, twice over
    return out


# -- export --

def _requant(real_scale: np.ndarray, bound: np.ndarray) -> Requant:
    """Multipliers M and one shift s with M / 2**s ~ ``real_scale`` [N] and M * ``bound`` < 2**31
    (``bound`` [N]: the largest accumulator each channel can reach)."""
    real_scale = np.asarray(real_scale, np.float64)
    for s in range(30, -1, -1):
        m = np.maximum(np.round(real_scale * 2.0 ** s), 1)
        if np.all(m * bound < 2 ** 31 - 1):
            return Requant(m.astype(np.int32), s)
    raise ValueError("no requantization fits int32")


def _linear(lin: QLinear, in_unit: float, out_unit) -> Linear:
    w, b = lin.folded(in_unit)
    wq, step = quantize_columns(w)
    bq = torch.round(b / step)
    wq_np = wq.detach().numpy().astype(np.int8)
    bq_np = bq.detach().numpy().astype(np.int64)
    bound = ACT_MAX * np.abs(wq_np.astype(np.int64)).sum(0) + np.abs(bq_np)
    if np.any(bound >= 2 ** 31):
        raise ValueError("accumulator may overflow int32")
    scale = (step / torch.as_tensor(out_unit)).detach().numpy() * np.ones(wq_np.shape[1])
    return Linear(wq_np, bq_np.astype(np.int32), _requant(scale, bound))


@torch.no_grad()
def export(model: QatLM) -> IntLM:
    """The ``IntLM`` parameters of ``model`` (the integer arithmetic reproduces its forward pass up
    to the rounding of each requantization multiplier)."""
    u = model.units
    d = model.tok_emb.shape[1]
    layers = []
    for b in model.blocks:
        out_unit = np.concatenate([np.full(d, u["q"]), np.full(d, u["k"]), np.full(d, u["v"])])
        lo = np.concatenate([np.full(d, -ACT_MAX), np.full(2 * d, -WEIGHT_MAX)]).astype(np.int32)
        heads = model.heads
        score_bound = np.full(heads, GAP_MAX, np.int64)
        layers.append(Layer(
            qkv=_linear(b.qkv, 0.0, out_unit), qkv_lo=lo, qkv_hi=-lo,
            score=_requant(np.full(heads, u["score"]), score_bound),
            attn_out=_requant(np.array([u["attn_out"]]), np.array([PROB_MAX * WEIGHT_MAX * 256])),
            proj=_linear(b.proj, u["o"], u["r"]),
            ff1=_linear(b.ff1, 0.0, u["h"]),
            gelu=gelu_int(torch.arange(-ACT_MAX, ACT_MAX + 1, dtype=torch.float64), u["h"], u["g"]).numpy()
            .astype(np.int32),
            ff2=_linear(b.ff2, u["g"], u["r"])))
    w, bias = model.head_folded()
    wq, step = quantize_columns(w, per_column=False)
    head = Linear(wq.numpy().astype(np.int8), torch.round(bias / step).numpy().astype(np.int32),
                  Requant(np.ones(1, np.int32), 0))
    embed = np.round(model.tok_emb.numpy() / u["r"]).astype(np.int32)
    pos = np.round(model.pos_emb.numpy() / u["r"]).astype(np.int32)
    return IntLM(model.heads, embed, pos, tuple(layers), head, freq_table(float(step)))


def freq_table(nats_per_unit: float, freq_bits: int = 24) -> np.ndarray:
    """[n] int64: frequency of a symbol k logit units below the best, floor(2**freq_bits *
    exp(-k * nats_per_unit)), at least 1; n is where it reaches 1."""
    n = math.ceil(freq_bits * math.log(2) / nats_per_unit) + 1
    k = np.arange(n, dtype=np.float64)
    return np.maximum(np.floor(2.0 ** freq_bits * np.exp(-k * nats_per_unit)), 1).astype(np.int64)
