"""ONNX Runtime sessions of the integer language model (``intlm``): one step, a frame, many rows.

The graph's arithmetic is integer, so its tables are the same for any batch size, padding, thread
count, optimization level and execution provider (``step.onnx`` on the CPU provider,
``step_cuda.onnx`` on CUDA): the encoder runs a whole frame in one call, a decoder one token per
call, a backlog many messages per call, a server many streams per call — and all agree.

A context's keys and values live in slots indexed by position (``IntState``: [1,H,dh,C] and
[1,H,C,dh] int8 per layer, C = the model's context): a step reads them and the caller writes its
new key and value into one slot. A call passes only the slots in use, rounded up to
``SLOT_QUANTUM`` (``slots_in_use``): attention costs in proportion to the slots passed, and masked
slots weigh exactly 0, so the tables are the same as with all C. Every call passes at least one
slot (an empty cache, T = 0, is not a shape the graphs are run with: ONNX Runtime's integer matmul
over an empty dimension is not relied on). Shapes: S symbols, V vocabulary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from rvqstream.models.intlm import MASKED, IntLM, cumulative_tables, symbol_ranges
from rvqstream.models.runtime import SessionSettings

Range = tuple[int, int, int]    # a coded symbol's interval of its cumulative table: (low, high, total)
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}
SLOT_QUANTUM = 16      # slots passed to a call: the longest context's length rounded up to this
# a batch row's work besides attention, in slots of attention (bench/step_cost.py: ~77 us a row
# against ~0.23 us a slot of a row at B=64 on one core); copying a slot costs about one slot's attention
ROW_COST_SLOTS = 330
# a call's fixed work (its nodes' runtime overhead: ~0.2 ms on one core), in the same units: about
# four new tokens of one row (bench/step_cost.py over B 1..64, S 1..16, T 16..240)
CALL_COST_SLOTS = 1300


def slots_in_use(longest: int, context: int) -> int:
    """Slots a call passes for contexts of at most ``longest`` positions: a multiple of
    ``SLOT_QUANTUM`` (at least one quantum), at most ``context``."""
    return min(context, max(1, -(-longest // SLOT_QUANTUM)) * SLOT_QUANTUM)


@dataclass
class IntState:
    """One context: key/value slots per layer, the next input (last token) and its position."""

    keys: list[np.ndarray]       # per layer [1,H,dh,C] int8 (a StepRows row: its batch's slots)
    values: list[np.ndarray]     # per layer [1,H,C,dh] int8
    last_token: int = 0          # the start symbol (EOS_ID) opens every context
    length: int = 0              # positions filled (tokens after the start symbol)

    def reset(self) -> None:
        """Start the context afresh (a message start or a keyframe) in the same slots."""
        self.last_token = 0
        self.length = 0


class IntStepModel:
    """The integer model's step graph in one ONNX Runtime session (CPU, or CUDA with ``device``)."""

    def __init__(self, graph: bytes, lm_info: dict, settings: SessionSettings, device: str = "cpu"):
        self.device = device
        if device not in PROVIDERS:
            raise ValueError(f"device must be one of {', '.join(PROVIDERS)}, not {device!r}")
        if PROVIDERS[device][0] not in ort.get_available_providers():
            raise RuntimeError(f"ONNX Runtime here has no {PROVIDERS[device][0]} (for cuda: pip install "
                               "'rvqstream[gpu]' on a machine with an NVIDIA GPU)")
        self._graph, self._settings = graph, settings
        self._one = self._session()     # one context's calls: a decoder's steps, a lone frame
        self._many: ort.InferenceSession | None = None     # calls of many contexts, made at the first
        self.layers, self.heads, self.head_dim = lm_info["layers"], lm_info["heads"], lm_info["head_dim"]
        self.context = lm_info["context"]
        self.freq_by_step = np.asarray(lm_info["freq_by_step"], np.int64)
        if self.freq_by_step.max() >= 1 << 31:
            raise ValueError("freq_by_step holds a frequency past int32")
        # coding intervals look frequencies up in an int32 copy: half the bytes to read (a
        # decoder's cumulative tables keep the int64 one: summing int32 into int64 costs a cast)
        self._freqs32 = self.freq_by_step.astype(np.int32)

    @classmethod
    def from_lm(cls, graph: bytes, lm: IntLM, settings: SessionSettings, device: str = "cpu") -> IntStepModel:
        info = {"layers": len(lm.layers), "heads": lm.heads, "head_dim": lm.head_dim, "context": lm.context,
                "freq_by_step": lm.freq_by_step}
        return cls(graph, info, settings, device)

    def new_state(self) -> IntState:
        h, dh, c = self.heads, self.head_dim, self.context
        return IntState([np.zeros((1, h, dh, c), np.int8) for _ in range(self.layers)],
                        [np.zeros((1, h, c, dh), np.int8) for _ in range(self.layers)])

    def _session(self) -> ort.InferenceSession:
        return ort.InferenceSession(self._graph, sess_options=self._settings.options(),
                                    providers=PROVIDERS[self.device])

    def run(self, tokens: np.ndarray, positions: np.ndarray, keys: list, values: list,
            bias: np.ndarray, many: bool = False) -> tuple[np.ndarray, list, list]:
        """One graph call: tokens/positions [B,S] int64, slots, bias [B,1,S,C+S] int32 ->
        (logit gaps [B,S,V] int32, new keys per layer [B,H,dh,S], new values [B,H,S,dh]).
        ``many``: a call of a batch's rows, which runs in a session of its own. A session that has
        run batched calls of many shapes runs one-token steps about 15% slower (ONNX Runtime's
        per-shape allocation; 8.2 against 9.6 kB/s decoding one message at a time), so a
        decoder's steps keep a session that sees few shapes. Both give the same integers."""
        feeds = {"tokens": tokens, "positions": positions, "bias": bias}
        for i in range(self.layers):
            feeds[f"past_k{i}"] = keys[i]
            feeds[f"past_v{i}"] = values[i]
        if many and self._many is None:
            self._many = self._session()
        out = (self._many if many else self._one).run(None, feeds)
        return out[0], out[1::2], out[2::2]

    def tables(self, gaps: np.ndarray) -> np.ndarray:
        """Logit gaps [...,V] -> cumulative frequency tables [...,V+1] int64."""
        return cumulative_tables(self.freq_by_step, gaps)

    # -- the float StepModel's interface: one token at a time --

    def step(self, state: IntState, z, j: int) -> tuple[np.ndarray, tuple]:
        """-> (cumulative table [V+1] of the token after ``state``, the new key/value of
        ``state.last_token``); ``z`` must be None (the integer model takes no frame codes)."""
        if z is not None:
            raise ValueError("the integer model codes no RVQ stages")
        gaps, kv = self.step_gaps(state)
        return self.tables(gaps), kv

    def step_gaps(self, state: IntState) -> tuple[np.ndarray, tuple]:
        """-> (logit gaps [V] of the token after ``state``, the new key/value for ``advance``)."""
        n = state.length
        T = slots_in_use(n, self.context)
        gaps, k, v = self.run(np.array([[state.last_token]], np.int64), np.array([[n]], np.int64),
                              [x[..., :T] for x in state.keys], [x[:, :, :T] for x in state.values],
                              step_bias(n, T))
        return gaps[0, 0], (k, v)

    def advance(self, state: IntState, token: int, kv: tuple | None) -> None:
        """Append ``state.last_token`` (its key/value from ``step``; None: a ``StepRows`` step wrote
        them into the slot already) and make ``token`` the next input."""
        n = state.length
        if kv is not None:
            k, v = kv
            for i in range(self.layers):
                state.keys[i][0, :, :, n] = k[i][0, :, :, 0]
                state.values[i][0, :, n, :] = v[i][0, :, 0, :]
        state.last_token = token
        state.length = n + 1

    def rows(self, count: int) -> StepRows:
        """``count`` contexts whose slots share batch buffers, stepped together."""
        return StepRows(self, count)

    # -- a frame in one call --

    def frame(self, state: IntState, symbols: list[int]) -> list[Range]:
        """The coding intervals of ``symbols`` coded one after another from ``state``, in one
        call; ``state`` advances past all but the last symbol, which becomes its next input."""
        gaps = self.frame_gaps(state, symbols)
        return [tuple(r) for r in symbol_ranges(self._freqs32, gaps, np.asarray(symbols)).tolist()]

    def frames(self, states: list[IntState], symbol_lists: list[list[int]]) -> list[list[Range]]:
        """``frame`` for many contexts: rows of similar frame lengths share a call (``call_groups``:
        each call pads its rows to its longest frame and gathers slots up to its longest context);
        each row's intervals are what ``frame`` gives alone."""
        if len(states) == 1:
            return [self.frame(states[0], symbol_lists[0])]
        out: list[list[Range]] = [[] for _ in states]
        for rows in call_groups(list(map(len, symbol_lists)), [st.length for st in states], self.context):
            ranges = self._frames_call([states[b] for b in rows], [symbol_lists[b] for b in rows])
            for b, r in zip(rows, ranges):
                out[b] = r
        return out

    def _frames_call(self, states: list[IntState], symbol_lists: list[list[int]]) -> list[list[Range]]:
        """``frames`` in one call: rows padded to the longest frame, slots up to the longest context."""
        B, S, c = len(states), max(map(len, symbol_lists)), self.context
        lengths = np.array([st.length for st in states], np.int64)
        T = slots_in_use(int(lengths.max()), c)
        tokens = np.zeros((B, S), np.int64)
        targets = np.zeros((B, S), np.int64)
        for b, (st, symbols) in enumerate(zip(states, symbol_lists)):
            tokens[b, :len(symbols)] = [st.last_token, *symbols[:-1]]
            targets[b, :len(symbols)] = symbols
        positions = np.minimum(lengths[:, None] + np.arange(S), c - 1)
        bias = frame_bias(lengths, T, S)
        keys = [np.concatenate([st.keys[i][..., :T] for st in states]) for i in range(self.layers)]
        values = [np.concatenate([st.values[i][:, :, :T] for st in states]) for i in range(self.layers)]
        gaps, k, v = self.run(tokens, positions, keys, values, bias, many=True)
        ranges = symbol_ranges(self._freqs32, gaps, targets).tolist()
        out = []
        for b, (st, symbols) in enumerate(zip(states, symbol_lists)):
            _append_frame(st, symbols, [x[b:b + 1] for x in k], [x[b:b + 1] for x in v])
            out.append([tuple(r) for r in ranges[b][:len(symbols)]])
        return out

    def frame_gaps(self, state: IntState, symbols: list[int]) -> np.ndarray:
        """``frame``'s logit gaps [S,V] (``state`` advances the same way). A lone frame passes the
        slots in use, so it runs with the batches' calls (``run(many=True)``): frames come in
        many shapes, which would slow a decoder's one-token steps down in their session."""
        S, n = len(symbols), state.length
        T = slots_in_use(n, self.context)
        inputs = np.array([[state.last_token, *symbols[:-1]]], np.int64)
        positions = np.arange(n, n + S, dtype=np.int64)[None]
        bias = frame_bias(np.array([n]), T, S)
        gaps, k, v = self.run(inputs, positions, [x[..., :T] for x in state.keys],
                              [x[:, :, :T] for x in state.values], bias, many=True)
        _append_frame(state, symbols, k, v)
        return gaps[0]


def call_groups(sizes: list[int], lengths: list[int], context: int) -> list[list[int]]:
    """Rows of frames (``sizes`` [B] symbols each, after contexts of ``lengths`` [B] positions)
    split into calls -> each call's row indices. A call costs ``CALL_COST_SLOTS`` and, for each
    row, its longest frame times (``ROW_COST_SLOTS`` + its slots in use), in slots of attention:
    one row's short flush in a call of full frames would cost a full frame. Rows sorted by frame
    length are cut where lengths change, at the cuts that cost least in all (exact over those
    cuts, by dynamic programming)."""
    order = sorted(range(len(sizes)), key=lambda b: (sizes[b], lengths[b]))
    starts = [i for i in range(len(order)) if i == 0 or sizes[order[i]] != sizes[order[i - 1]]]
    bounds = starts + [len(order)]
    runs_longest = [max(lengths[b] for b in order[bounds[g]:bounds[g + 1]]) for g in range(len(starts))]
    best = [0.0] + [float("inf")] * (len(starts))       # best[j]: cost of the rows before bounds[j]
    cut = [0] * (len(starts) + 1)
    for i in range(len(starts)):
        longest = 0
        for j in range(i + 1, len(bounds)):
            longest = max(longest, runs_longest[j - 1])
            rows, size = bounds[j] - bounds[i], sizes[order[bounds[j] - 1]]
            cost = best[i] + CALL_COST_SLOTS + rows * size * (ROW_COST_SLOTS + slots_in_use(longest, context))
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(starts)
    while j > 0:
        groups.append(order[bounds[cut[j]]:bounds[j]])
        j = cut[j]
    return groups[::-1]


@functools.lru_cache(maxsize=1024)
def step_bias(length: int, slots: int) -> np.ndarray:
    """``frame_bias`` of one new token after a context of ``length`` positions (read-only, made
    once for each length and slot count: a decoder's steps reuse them)."""
    bias = frame_bias(np.array([length]), slots, 1)
    bias.setflags(write=False)
    return bias


def frame_bias(lengths: np.ndarray, slots: int, S: int) -> np.ndarray:
    """Bias [B,1,S,slots+S] int32 of frames of S symbols after contexts of ``lengths`` [B] (S = 1:
    one new token): each query sees its context's filled slots and the frame's symbols up to
    itself."""
    bias = np.full((len(lengths), 1, S, slots + S), MASKED, np.int32)
    bias[:, 0, :, :slots] = np.where(np.arange(slots)[None, :] < lengths[:, None], 0, MASKED)[:, None, :]
    bias[:, 0, :, slots:] = np.where(np.arange(S)[None, :] <= np.arange(S)[:, None], 0, MASKED)
    return bias


def _append_frame(state: IntState, symbols: list[int], keys: list, values: list) -> None:
    """Write a frame's new keys [1,H,dh,>=S] and values [1,H,>=S,dh] into ``state``'s slots and
    make its last symbol the next input."""
    n, m = state.length, len(symbols)
    for i, (k, v) in enumerate(zip(keys, values)):
        state.keys[i][0, :, :, n:n + m] = k[0, :, :, :m]
        state.values[i][0, :, n:n + m, :] = v[0, :, :m, :]
    state.last_token, state.length = symbols[-1], n + m


class StepRows:
    """B contexts (``states``, views into shared slot buffers) stepped together: one graph call
    computes the next table of every context in ``step``'s list. The buffers ([B,H,dh,T] keys and
    [B,H,T,dh] values per layer) hold exactly the slots the contexts use, T = ``slots_in_use`` of
    the longest context plus its next slot: a call passes them as they lie, with no copy, and they
    are made again (a copy) only when T changes, once every ``SLOT_QUANTUM`` steps of the longest
    context at most. A state's ``keys`` and ``values`` are views of its row."""

    def __init__(self, model: IntStepModel, count: int):
        self.model = model
        self.count = count
        self.slots = 0
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.states = [IntState([], []) for _ in range(count)]
        self._fit(SLOT_QUANTUM)

    def _fit(self, slots: int) -> None:
        """Make the buffers hold ``slots`` slots (keeping the first ``slots`` of each row)."""
        h, dh, keep = self.model.heads, self.model.head_dim, min(slots, self.slots)
        keys = [np.zeros((self.count, h, dh, slots), np.int8) for _ in range(self.model.layers)]
        values = [np.zeros((self.count, h, slots, dh), np.int8) for _ in range(self.model.layers)]
        for new, old in zip(keys, self.keys):
            new[..., :keep] = old[..., :keep]
        for new, old in zip(values, self.values):
            new[:, :, :keep] = old[:, :, :keep]
        self.keys, self.values, self.slots = keys, values, slots
        for b, state in enumerate(self.states):
            state.keys = [k[b:b + 1] for k in keys]
            state.values = [v[b:b + 1] for v in values]

    def step(self, rows: list[int]) -> list[tuple[np.ndarray, None]]:
        """-> for each row in ``rows`` (in that order), what ``IntStepModel.step`` gives for its state,
        the new key/value written into its next slot already (None in their place, for ``advance``)."""
        return [(table, None) for table in self.model.tables(self.step_gaps(rows))]

    def step_gaps(self, rows: list[int]) -> np.ndarray:
        """-> logit gaps [len(rows),V]; each listed row's new key and value are written into the
        slot after its context (``advance(state, token, None)`` then takes that slot into it; a row
        that does not advance keeps the slot unused, masked). The call takes whichever costs less:
        the buffers' first rows up to the last listed one as they lie (no copy; rows not listed are
        computed and ignored), or the listed rows' slots in use gathered into one batch (a copy)."""
        c = self.model.context
        slots = slots_in_use(max(s.length for s in self.states) + 1, c)
        if slots != self.slots:
            self._fit(slots)
        states = [self.states[b] for b in rows]
        lengths = np.array([s.length for s in states], np.int64)
        T, m = slots_in_use(int(lengths.max()), c), max(rows) + 1
        if len(rows) * (ROW_COST_SLOTS + 2 * T) < m * (ROW_COST_SLOTS + self.slots):
            index, run_states, run_lengths = np.arange(len(rows)), states, lengths
            keys = [x[..., :T][rows] for x in self.keys]
            values = [x[:, :, :T][rows] for x in self.values]
        else:
            index, T = np.array(rows), self.slots
            run_states = self.states[:m]
            run_lengths = np.array([s.length for s in run_states], np.int64)
            keys, values = [x[:m] for x in self.keys], [x[:m] for x in self.values]
        tokens = np.array([[s.last_token] for s in run_states], np.int64)
        gaps, k, v = self.model.run(tokens, run_lengths[:, None], keys, values, frame_bias(run_lengths, T, 1),
                                    many=True)
        for i in range(self.model.layers):
            self.keys[i][rows, :, :, lengths] = k[i][index, :, :, 0]
            self.values[i][rows, :, lengths, :] = v[i][index, :, 0, :]
        return gaps[index, 0]
