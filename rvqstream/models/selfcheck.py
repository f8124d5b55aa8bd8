"""A machine checks itself: the integer model's tables for fixed inputs against the golden hash
its bundle's manifest carries (``golden_tables_sha256``, computed at export by the numpy
reference). ``rvqstream selfcheck [--device cuda]`` runs it.

The inputs are ``GOLDEN_TEXTS`` tokenized, each coded as one context from its start: the tables of
every token, taken three ways — frame by frame (16 tokens a call), one token a call, and all
texts at once as rows of one batch — must all hash to the golden value.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rvqstream.models.int_runtime import IntStepModel
from rvqstream.models.intlm import MASKED, IntLM, reference_step
from rvqstream.models.tokenizer import EOS_ID, Tokenizer

GOLDEN_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "def main():\n    print('hello, world')\n",
    '{"user": "ada", "id": 1815, "tags": ["math", "engines"]}',
    "2026-11-30T04:10:06Z INFO server listening on 127.0.0.1:50051",
    "Ünïcödé, emoji 🙂 and CJK 漢字 round-trip exactly.",
    "In the beginning God created the heaven and the earth.",
)
FRAME = 16


def golden_contexts(tokenizer: Tokenizer, context: int) -> list[list[int]]:
    """Each golden text's input symbols: the start symbol, then its tokens (within one context)."""
    return [[EOS_ID, *tokenizer.encode(t)][:context] for t in GOLDEN_TEXTS]


def digest(gaps: list[np.ndarray]) -> str:
    """sha256 (hex) of the gap tables [n,V] of each context, in order, as int32 little-endian."""
    h = hashlib.sha256()
    for g in gaps:
        h.update(np.ascontiguousarray(g, dtype="<i4").tobytes())
    return h.hexdigest()


def reference_gaps(lm: IntLM, contexts: list[list[int]]) -> list[np.ndarray]:
    """The numpy reference's gaps for each context, the whole context in one pass."""
    out = []
    h, dh = lm.heads, lm.head_dim
    for symbols in contexts:
        S = len(symbols)
        empty_k = [np.zeros((1, h, dh, 0), np.int8)] * len(lm.layers)
        empty_v = [np.zeros((1, h, 0, dh), np.int8)] * len(lm.layers)
        bias = np.where(np.arange(S)[None, :] <= np.arange(S)[:, None], 0, MASKED).reshape(1, 1, S, S)
        gaps, _, _ = reference_step(lm, np.array([symbols]), np.arange(S)[None], empty_k, empty_v, bias)
        out.append(gaps[0])
    return out


def graph_gaps(step: IntStepModel, contexts: list[list[int]], mode: str) -> list[np.ndarray]:
    """The step graph's gaps [n,V] for each context of n input symbols: ``mode`` "frames" (16
    symbols a call), "steps" (one a call) or "rows" (all contexts as rows of one batch)."""
    out = []
    if mode == "rows":
        rows = step.rows(len(contexts))
        gaps: list[list[np.ndarray]] = [[] for _ in contexts]
        for b, symbols in enumerate(contexts):
            rows.states[b].last_token = symbols[0]
        for t in range(max(map(len, contexts))):
            live = [b for b, s in enumerate(contexts) if t < len(s)]
            g = rows.step_gaps(live)
            for i, b in enumerate(live):
                gaps[b].append(g[i])
                step.advance(rows.states[b], _next(contexts[b], t), None)
        return [np.stack(g) for g in gaps]
    size = FRAME if mode == "frames" else 1
    for symbols in contexts:
        state = step.new_state()
        state.last_token = symbols[0]
        targets = [_next(symbols, t) for t in range(len(symbols))]
        out.append(np.concatenate([step.frame_gaps(state, targets[i:i + size])
                                   for i in range(0, len(targets), size)]))
    return out


def _next(symbols: list[int], t: int) -> int:
    """The symbol after input ``t`` (the end symbol after the last)."""
    return symbols[t + 1] if t + 1 < len(symbols) else EOS_ID


def check(step: IntStepModel, tokenizer: Tokenizer, golden: str) -> dict[str, bool]:
    """Whether each way of running ``step`` matches the golden hash."""
    contexts = golden_contexts(tokenizer, step.context)
    return {mode: digest(graph_gaps(step, contexts, mode)) == golden for mode in ("frames", "steps", "rows")}
