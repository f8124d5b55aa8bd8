"""Residual vector quantization of message embeddings, and asymmetric-distance search over codes.

A ``ResidualQuantizer`` holds S stages of K = 256 codewords each (float32 [S, K, D]). A vector's
code is one byte a stage: stage s picks the codeword nearest the residual the stages before it
left. Any prefix of the stages is a code by itself (each stage was fitted to the residual of the
stages before it, so the first s stages are the best s-stage code this quantizer knows): a
message's code at s stages is s bytes, 8·s bits.

Search is by asymmetric distance: the query stays a float vector, the database stays codes. For a
query q the score of a code c is q · x̂(c) = Σ_s q · C[s, c_s] — one table of K inner products a
stage, then one lookup and add a stage for every code. ``SemanticIndex`` pairs stages, so that a
lookup in a table of K² sums serves two stages at once, and scans codes stored stage-major.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

K = 256                 # codewords a stage: one byte


@dataclass(frozen=True)
class Hit:
    """A search result: the message's ``offset`` and its ``score`` (estimated cosine, -1..1)."""

    offset: int
    score: float


class ResidualQuantizer:
    """``codebooks``: float32 [S, K, D]. ``encode`` [N, D] -> uint8 [N, S]; ``decode`` back."""

    def __init__(self, codebooks: np.ndarray):
        if codebooks.ndim != 3 or codebooks.shape[1] != K:
            raise ValueError(f"codebooks must be [stages, {K}, dim]; got {codebooks.shape}")
        self.codebooks = np.ascontiguousarray(codebooks, np.float32)
        self.stages, _, self.dim = self.codebooks.shape
        self._norms = (self.codebooks ** 2).sum(-1)          # [S, K]

    def encode(self, x: np.ndarray, stages: int | None = None) -> np.ndarray:
        """Greedy codes of float [N, D] -> uint8 [N, stages] (default: all)."""
        stages = self.stages if stages is None else self._check(stages)
        residual = np.array(x, np.float32, copy=True).reshape(-1, self.dim)
        codes = np.zeros((len(residual), stages), np.uint8)
        for s in range(stages):
            # nearest codeword: argmin |c|^2 - 2 r·c
            dist = self._norms[s][None, :] - 2.0 * residual @ self.codebooks[s].T
            codes[:, s] = dist.argmin(1)
            residual -= self.codebooks[s][codes[:, s]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """uint8 [N, s] (s <= S) -> float32 [N, D], the sum of each code's codewords."""
        codes = np.asarray(codes).reshape(len(codes), -1)
        self._check(codes.shape[1])
        out = np.zeros((len(codes), self.dim), np.float32)
        for s in range(codes.shape[1]):
            out += self.codebooks[s][codes[:, s]]
        return out

    def tables(self, query: np.ndarray, stages: int) -> np.ndarray:
        """float32 [stages, K]: the inner product of ``query`` [D] with every codeword of a stage."""
        return self.codebooks[:self._check(stages)] @ np.asarray(query, np.float32).reshape(self.dim)

    def _check(self, stages: int) -> int:
        if not 1 <= stages <= self.stages:
            raise ValueError(f"stages must be 1..{self.stages}; got {stages}")
        return stages

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, codebooks=self.codebooks)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ResidualQuantizer:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["codebooks"])


class SemanticIndex:
    """Codes of messages, searchable by asymmetric distance, on the device or the server.

    Holds the offsets (int64 [N]) and the codes of the messages added, stored as pairs of stages
    (uint16 [ceil(stages / 2), N], stage a + K · stage b, grown in place). ``search`` scores every
    code against a query embedding and returns the ``k`` best: one lookup in a table of K² sums
    and one add per pair of stages and code.
    """

    def __init__(self, quantizer: ResidualQuantizer, stages: int | None = None, model_id: str = ""):
        """``model_id``: the code model whose quantizer this is (its codes are the ones it takes)."""
        self.quantizer, self.model_id = quantizer, model_id
        self.stages = quantizer.stages if stages is None else quantizer._check(stages)
        self._pairs = np.zeros(((self.stages + 1) // 2, 1024), np.uint16)
        self._offsets = np.zeros(1024, np.int64)
        self.size = 0
        self.next_offset = 0      # where a later sync of this index goes on from (set by the sync)

    def __len__(self) -> int:
        return self.size

    @property
    def offsets(self) -> np.ndarray:
        """int64 [N]: the offsets added, in the order they were added."""
        return self._offsets[:self.size]

    @property
    def codes(self) -> np.ndarray:
        """uint8 [N, stages]: the codes added."""
        pairs = self._pairs[:, :self.size]
        out = np.empty((self.size, 2 * len(pairs)), np.uint8)
        out[:, 0::2] = (pairs & (K - 1)).T
        out[:, 1::2] = (pairs >> 8).T
        return out[:, :self.stages]

    @property
    def end_offset(self) -> int:
        """One past the largest offset added (0 when empty): where a later sync goes on from."""
        return int(self._offsets[:self.size].max()) + 1 if self.size else 0

    def add(self, offsets: np.ndarray, codes: np.ndarray) -> None:
        """Adds messages: ``offsets`` int [n], ``codes`` uint8 [n, >= stages] (longer codes are cut)."""
        offsets = np.asarray(offsets, np.int64).reshape(-1)
        codes = np.asarray(codes, np.uint8).reshape(len(offsets), -1)
        if codes.shape[1] < self.stages:
            raise ValueError(f"codes of {codes.shape[1]} stages; this index needs {self.stages}")
        n = self.size + len(offsets)
        if n > self._offsets.shape[0]:
            cap = max(n, 2 * self._offsets.shape[0])
            grown = np.zeros((len(self._pairs), cap), np.uint16)
            grown[:, :self.size] = self._pairs[:, :self.size]
            self._pairs = grown
            self._offsets = np.resize(self._offsets, cap)
        padded = np.zeros((len(offsets), 2 * len(self._pairs)), np.uint16)
        padded[:, :self.stages] = codes[:, :self.stages]
        self._pairs[:, self.size:n] = (padded[:, 0::2] + K * padded[:, 1::2]).T
        self._offsets[self.size:n] = offsets
        self.size = n

    def drop_below(self, first_offset: int) -> None:
        """Forgets the messages whose offset is below ``first_offset`` (retention removed them)."""
        keep = self._offsets[:self.size] >= first_offset
        if keep.all():
            return
        n = int(keep.sum())
        self._pairs[:, :n] = self._pairs[:, :self.size][:, keep]
        self._offsets[:n] = self._offsets[:self.size][keep]
        self.size = n

    def scores(self, query: np.ndarray, stages: int | None = None) -> np.ndarray:
        """float32 [N]: every code's estimated inner product with ``query`` [D], over the first
        ``stages`` stages (default: the index's). Safe while another thread adds codes: it scores
        the codes there were when it began."""
        pairs, n = self._pairs, self.size
        stages = self.stages if stages is None else min(self.quantizer._check(stages), self.stages)
        tables = self.quantizer.tables(query, stages)
        if stages % 2:
            tables = np.concatenate([tables, np.zeros((1, K), np.float32)])
        out = np.zeros(n, np.float32)
        buf = np.empty(n, np.float32)
        for p in range(len(tables) // 2):
            # entry a + K·b of the pair's table: stage 2p's codeword a plus stage 2p+1's codeword b
            table = (tables[2 * p][None, :] + tables[2 * p + 1][:, None]).reshape(-1)
            np.take(table, pairs[p, :n], out=buf)
            out += buf
        return out

    def search(self, query: np.ndarray, k: int = 10, stages: int | None = None) -> list[Hit]:
        """The ``k`` best messages for ``query`` (a unit embedding [D]), best first."""
        offsets = self._offsets
        scores = self.scores(query, stages)
        n = len(scores)
        if n == 0 or k <= 0:
            return []
        k = min(k, n)
        top = np.argpartition(scores, n - k)[n - k:]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(int(offsets[i]), float(scores[i])) for i in top]
