"""The server's view of message codes: codes made at publish, per-channel search indexes kept in
memory, and near-duplicate detection.

Every message gets a code when its text is complete (a published message at publish, a streamed
one when it ends), made by the code model on the work pool and stored in the log beside it. A
channel's index (``SemanticIndex``) is read from the log the first time the channel is searched,
then kept up to date by the appends of this process. Indexes hold at most ``max_codes`` codes over
all channels: past that the least recently used channels' indexes are dropped (and read again
when needed). Near-duplicates are found among the embeddings of each channel's recent messages
(``RecentEmbeddings``), not among codes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from rvqstream.models.code_model import CodeModel, numbers, numbers_agree
from rvqstream.models.errors import Cancel
from rvqstream.models.rvq_codes import SemanticIndex
from rvqstream.server.logstore import Code, LogStore, MessageState

READ_PAGE = 8192           # codes read from the log at once
NEAR_WINDOW = 1000         # a near-duplicate repeats one of the channel's last NEAR_WINDOW messages ...
WINDOW_BUDGET = 100_000    # ... published since the server started; windows hold this many at most
CODE_TEXT = 4096           # characters of a message's start its code is made from (the encoder
                           # reads 256 word pieces at most, about 1 KB of English)


@dataclass(frozen=True)
class Near:
    """The earlier message a new one repeats: its ``offset`` (or, within one publish batch,
    ``record``: the index of an earlier message of the batch) and the cosine of their embeddings."""

    score: float
    offset: int | None = None
    record: int | None = None


def to_int8(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [N, D] -> (int8 [N, D], scales float32 [N]): each vector over its largest |value|."""
    scales = (np.abs(embeddings).max(1) / 127).astype(np.float32)
    scales[scales == 0] = 1.0
    return np.round(embeddings / scales[:, None]).astype(np.int8), scales


def window_vectors(embeddings: np.ndarray) -> np.ndarray:
    """The vectors a recent window holds for float32 [N, D] embeddings (their int8 rounding)."""
    q, scales = to_int8(embeddings)
    return q.astype(np.float32) * scales[:, None]


class _Window:
    """One channel's ring of recent messages: ``count`` added so far, the last ``len(offsets)``
    kept (int8 vectors [W, D] with their scales [W], offsets [W], numbers)."""

    def __init__(self, window: int, dim: int):
        self.vectors = np.zeros((window, dim), np.int8)
        self.scales = np.zeros(window, np.float32)
        self.offsets = np.zeros(window, np.int64)
        self.numbers: list[frozenset[str]] = [frozenset()] * window
        self.count = 0

    @property
    def held(self) -> int:
        return min(self.count, len(self.offsets))


class RecentEmbeddings:
    """The embeddings of each channel's last ``window`` messages stored by this process (int8, one
    scale a vector: 388 bytes a message) and the numbers they state, for near-duplicate detection:
    codes are too coarse to tell a retold message from a related one. At most ``budget`` over all
    channels: past that the least recently used channels' windows are dropped. A restarted server
    starts them empty."""

    def __init__(self, window: int, budget: int, dim: int):
        self.window, self.budget, self.dim = window, budget, dim
        self._channels: OrderedDict[str, _Window] = OrderedDict()
        self._held = 0

    def best(self, channel: str, e: np.ndarray, nums: frozenset[str], threshold: float) -> Near | None:
        """The message of the channel's window that embedding ``e`` [D] (of a text stating
        ``nums``) repeats: the highest cosine at least ``threshold`` whose numbers agree; None if
        there is none."""
        w = self._channels.get(channel)
        if w is None or w.count == 0:
            return None
        self._channels.move_to_end(channel)
        n = w.held
        scores = (w.vectors[:n] @ e) * w.scales[:n]
        candidates = np.nonzero(scores >= threshold)[0]
        for j in candidates[np.argsort(-scores[candidates], kind="stable")]:
            if numbers_agree(nums, w.numbers[j]):
                return Near(float(scores[j]), offset=int(w.offsets[j]))
        return None

    def add(self, channel: str, offsets: list[int], embeddings: np.ndarray, nums: list[frozenset[str]]) -> None:
        """Adds stored messages (offsets, float32 [N, D] embeddings, the numbers of their texts)."""
        w = self._channels.get(channel)
        if w is None:
            w = self._channels[channel] = _Window(self.window, self.dim)
        self._channels.move_to_end(channel)
        q, scales = to_int8(embeddings)
        for o, v, scale, ns in zip(offsets, q, scales, nums):
            slot = w.count % self.window
            w.vectors[slot], w.scales[slot], w.offsets[slot], w.numbers[slot] = v, scale, o, ns
            self._held += w.count < self.window
            w.count += 1
        while self._held > self.budget and len(self._channels) > 1:
            _, dropped = self._channels.popitem(last=False)
            self._held -= dropped.held


class _ChannelIndex:
    """One channel's index and how far the log has been read into it. ``pending`` holds the
    offsets read while their message was still streaming: their codes come later, by ``note``;
    ``deferred``, the codes noted while the log was being read (sorted out once it is read)."""

    def __init__(self, index: SemanticIndex):
        self.index = index
        self.read_to = 0
        self.pending: set[int] = set()
        self.deferred: list[tuple[list[int], list[Code]]] = []
        self.lock = asyncio.Lock()
        self.loaded = False


class ChannelCodes:
    """Codes of the channels' messages: making them, searching them, near-duplicates."""

    def __init__(self, store: LogStore, model: CodeModel, max_codes: int,
                 window: int = NEAR_WINDOW, window_budget: int = WINDOW_BUDGET):
        self.store, self.model, self.max_codes = store, model, max_codes
        self._channels: OrderedDict[str, _ChannelIndex] = OrderedDict()
        self.recent = RecentEmbeddings(window, window_budget, model.quantizer.dim)

    def make(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float32 [N, D], codes uint8 [N, stages]) of texts (blocking: run it on the
        work pool)."""
        emb = self.model.embed(texts)
        return emb, self.model.quantizer.encode(emb)

    def code(self, code: np.ndarray, near: Near | None = None) -> Code:
        """The log's record of a code, with the message it repeats when it is a near-duplicate."""
        return Code(self.model.model_id, bytes(code), near.offset if near else None, near.record if near else None)

    async def index(self, channel: str) -> SemanticIndex:
        """The channel's index, read from the log as far as it goes (on a shared log, again at
        every call: other replicas append too)."""
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _ChannelIndex(self.model.index())
        self._channels.move_to_end(channel)
        async with ch.lock:
            if not ch.loaded:
                await self._load(channel, ch)
                ch.loaded = True
                for offsets, codes in ch.deferred:
                    self._add_noted(ch, offsets, codes)
                ch.deferred.clear()
            elif self.store.shared:
                await self._settle_pending(channel, ch)
                await self._load(channel, ch)
            first = await self.store.first_offset(channel)
            ch.index.drop_below(first)
            ch.pending = {o for o in ch.pending if o >= first}    # retention took the rest
        self._evict()
        return ch.index

    async def _load(self, channel: str, ch: _ChannelIndex) -> None:
        while True:
            entries = await self.store.read_codes(channel, ch.read_to, READ_PAGE)
            if not entries:
                return
            offsets, codes = [], []
            for e in entries:
                if e.code is not None and e.code.model_id == self.model.model_id:
                    offsets.append(e.offset)
                    codes.append(np.frombuffer(e.code.code, np.uint8))
                elif e.code is None and e.state == MessageState.STREAMING:
                    ch.pending.add(e.offset)
            if offsets:
                ch.index.add(np.array(offsets), np.stack(codes))
            ch.read_to = entries[-1].offset + 1

    async def _settle_pending(self, channel: str, ch: _ChannelIndex) -> None:
        """Reads the codes of messages that were streaming when the index read them and have
        closed since (written by another replica, so never noted here)."""
        at = min(ch.pending, default=ch.read_to)
        while ch.pending and at < ch.read_to:
            entries = [e for e in await self.store.read_codes(channel, at, READ_PAGE) if e.offset < ch.read_to]
            if not entries:
                return
            for e in entries:
                if e.offset in ch.pending and e.state != MessageState.STREAMING:
                    ch.pending.discard(e.offset)
                    if e.code is not None and e.code.model_id == self.model.model_id:
                        ch.index.add(np.array([e.offset]), np.frombuffer(e.code.code, np.uint8)[None])
            at = entries[-1].offset + 1

    def note(self, channel: str, offsets: list[int], codes: list[Code]) -> None:
        """Adds codes this process stored (after the append is durable) to the channel's index,
        unless the index read them from the log already (on a shared log the index reads every
        code from the log, this process's too)."""
        ch = self._channels.get(channel)
        if ch is None or self.store.shared:
            return
        if not ch.loaded:
            ch.deferred.append((offsets, codes))
            return
        self._add_noted(ch, offsets, codes)

    def _add_noted(self, ch: _ChannelIndex, offsets: list[int], codes: list[Code]) -> None:
        keep = [(o, c) for o, c in zip(offsets, codes)
                if c.model_id == self.model.model_id and (o >= ch.read_to or o in ch.pending)]
        for o, _ in keep:
            ch.pending.discard(o)
        if keep:
            ch.index.add(np.array([o for o, _ in keep]), np.stack([np.frombuffer(c.code, np.uint8)
                                                                   for _, c in keep]))
            self._evict()

    def near(self, channel: str, texts: list[str], embeddings: np.ndarray, drop: bool) -> list[Near | None]:
        """For each new message (its text, and its embedding in float32 [N, D], in publish
        order), the recent message or earlier message of the batch it repeats: a cosine of at
        least the model's ``near_duplicate_score`` and the same numbers (None: it repeats none).
        With ``drop``, a near-duplicate is no match for the messages after it (it is not stored)."""
        threshold = self.model.near_duplicate_score
        nums = [numbers(t) for t in texts]
        kept: list[int] = []
        out: list[Near | None] = []
        for i, e in enumerate(embeddings):
            best = self.recent.best(channel, e, nums[i], threshold)
            if kept:
                scores = embeddings[kept] @ e
                for j in np.argsort(-scores, kind="stable"):
                    if scores[j] < threshold or (best is not None and scores[j] <= best.score):
                        break
                    if numbers_agree(nums[i], nums[kept[j]]):
                        best = Near(float(scores[j]), record=kept[j])
                        break
            if best is None or not drop:
                kept.append(i)
            out.append(best)
        return out

    def stored(self, channel: str, offsets: list[int], codes: list[Code], texts: list[str],
               embeddings: np.ndarray) -> None:
        """Messages this process stored (the append is durable): their codes join the channel's
        index when it is loaded, their embeddings and numbers the recent window."""
        self.note(channel, offsets, codes)
        self.recent.add(channel, offsets, embeddings, [numbers(t) for t in texts])

    def _evict(self) -> None:
        total = sum(len(ch.index) for ch in self._channels.values())
        while total > self.max_codes and len(self._channels) > 1:
            _, ch = self._channels.popitem(last=False)
            total -= len(ch.index)


def make_codes(codes: ChannelCodes, texts: list[str], cancel: Cancel) -> tuple[np.ndarray, np.ndarray]:
    """``codes.make(texts)`` as work-pool work: texts cut to CODE_TEXT characters."""
    cancel.check()
    return codes.make([t[:CODE_TEXT] for t in texts])
