"""ONNX Runtime sessions of the codec: the frame encoder, the RVQ tables and the decoder step.

Every session runs on the CPU provider with fixed settings (``SessionSettings``), so that the
probability model gives bit-identical logits on both ends of a stream (DESIGN.md §3, Determinism).
Shapes: F tokens per frame, D latent dims, N stages of K codes, V vocabulary, H heads of dh dims.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort


@dataclass(frozen=True)
class SessionSettings:
    threads: int = 1
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def options(self) -> ort.SessionOptions:
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self.optimization
        so.log_severity_level = 3
        return so


def _session(model: bytes, settings: SessionSettings) -> ort.InferenceSession:
    return ort.InferenceSession(model, sess_options=settings.options(), providers=["CPUExecutionProvider"])


class FrameEncoder:
    """Frame tokens -> RVQ codes (encoder side only: its numerics need not match anywhere)."""

    def __init__(self, graph: bytes, codebooks: np.ndarray, frame: int, settings: SessionSettings):
        self._sess = _session(graph, settings)
        self.codebooks = codebooks                              # [N,K,D] float32
        self._cb_sq = (codebooks.astype(np.float32) ** 2).sum(-1)   # [N,K]
        self.frame = frame

    def latents(self, frames: list[list[int]]) -> np.ndarray:
        """M frames of 1..F token ids -> latents [M,D]."""
        m = np.zeros((len(frames), self.frame), np.int64)
        for i, f in enumerate(frames):
            m[i, :len(f)] = f
        lengths = np.array([len(f) for f in frames], np.int64)
        return self._sess.run(None, {"frames": m, "lengths": lengths})[0]

    def codes(self, frames: list[list[int]], stages: int) -> np.ndarray:
        """M frames -> codes [M, stages] int64 (greedy residual nearest neighbours)."""
        r = self.latents(frames).astype(np.float32)
        out = np.zeros((len(frames), stages), np.int64)
        for s in range(stages):
            d = self._cb_sq[s][None, :] - 2.0 * r @ self.codebooks[s].T
            idx = d.argmin(-1)
            out[:, s] = idx
            r = r - self.codebooks[s][idx]
        return out


def dequantize(codebooks: np.ndarray, codes) -> np.ndarray:
    """Codes [n] -> quantized latent [1,D] float32: the sum of the first n stages' vectors, added
    in stage order (elementwise IEEE adds: identical on every machine)."""
    z = np.zeros((1, codebooks.shape[2]), np.float32)
    for s, c in enumerate(codes):
        z += codebooks[s, int(c)]
    return z


@dataclass
class LMState:
    """A decoder context: the KV cache and the next input (last token, its position)."""

    kv: list = field(default_factory=list)   # 2*layers arrays [1,H,T,dh]
    last_token: int = 0                      # the start symbol (EOS_ID) opens every context
    length: int = 0                          # tokens in the context after the start symbol

    def copy(self) -> LMState:
        return LMState(list(self.kv), self.last_token, self.length)


class StepModel:
    """The decoder's single step: (state, conditioning) -> float32 logits [V], advancing the state."""

    def __init__(self, graph: bytes, settings: SessionSettings, layers: int, heads: int, head_dim: int,
                 latent_dim: int):
        self._sess = _session(graph, settings)
        self._layers, self._heads, self._hd = layers, heads, head_dim
        self._past_names = [f"past_{kv}{i}" for i in range(layers) for kv in "kv"]
        self._zero_z = np.zeros((1, latent_dim), np.float32)
        self._has = {False: np.zeros((1, 1), np.float32), True: np.ones((1, 1), np.float32)}

    def new_state(self) -> LMState:
        empty = np.zeros((1, self._heads, 0, self._hd), np.float32)
        return LMState([empty] * (2 * self._layers))

    def step(self, state: LMState, z: np.ndarray | None, j: int) -> tuple[np.ndarray, list]:
        """-> (cumulative frequency table [V+1] int64 of the token after ``state``, the KV cache
        with ``state.last_token`` appended), conditioned on frame latent ``z`` [1,D] at
        position-in-frame ``j``, or unconditioned when ``z`` is None. ``state`` is not changed."""
        _, cum, kv = self.run(state, z, j)
        return cum, kv

    def run(self, state: LMState, z: np.ndarray | None, j: int) -> tuple[np.ndarray, np.ndarray, list]:
        """-> (logits [V] float32, cumulative table [V+1] int64, new KV cache)."""
        feeds = {
            "token": np.array([[state.last_token]], np.int64),
            "pos": np.array([[state.length]], np.int64),
            "z": self._zero_z if z is None else z,
            "j": np.array([[j]], np.int64),
            "has_z": self._has[z is not None],
        }
        feeds.update(zip(self._past_names, state.kv))
        out = self._sess.run(None, feeds)
        return out[0][0], out[1][0], out[2:]

    @staticmethod
    def advance(state: LMState, token: int, kv: list) -> None:
        """Append ``token`` to the context, with the KV cache that ``step`` returned for ``state``."""
        state.kv = kv
        state.last_token = token
        state.length += 1
