"""The scheduler: model work from every encode stream runs on a few worker threads, earliest
deadline first, batched across streams.

Work items (one per stream at a time: push text, flush, end message) are gathered for at most
``max_queue_delay_ms`` into a batch, which joins a deadline-ordered ready queue; each of
``workers`` threads takes the item due first whenever it is free, with every other ready item of
the same integer model (up to ``max_batch``), and runs them together as an ``ItemGroup``: each
item's operations are frame requests (``coding.Frames``), and every round computes the pending
frame of every item in one model call (``IntStepModel.frames``: the same tables as alone), so the
event loop never blocks on the model and many streams cost little more than one. What a group
costs is predicted from its shape (rounds, tokens, items: ``costs.CostModel``), learned from the
groups run so far and seeded by a warm-up at start (``warm_up``). Items join a group due first
while the group with them is predicted to have every member's frames out by its deadline (now +
the predicted cost + the event loop's current lag, ``LoopLag``: frames wait that long again to
leave); the rest wait for the next free worker (``Scheduler._take_group``). An item that cannot
make its deadline even in a group of its own runs degraded: its frames are sent in fallback form
(no language-model work at all), flagged and counted. Text is never dropped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rvqstream.models import Batch, Codec, StreamEncoder
from rvqstream.models.coding import FrameRequest, Frames
from rvqstream.models.int_runtime import IntStepModel
from rvqstream.server.costs import CostModel, DecayingMax, GroupShape, LoopLag
from rvqstream.server.telemetry import Metrics

CHARS_PER_TOKEN = 3.0     # to estimate the tokens of text not yet tokenized
WARM_UP_TEXT = ("The server streams text through a learned codec; every frame must be out within "
                "its budget, so the scheduler predicts what each piece of work will cost. ") * 3
WARM_UP_STREAMS = 8       # the warm-up's group of short flushes: one round, many items
EXPECTED_DELAY_REUSE_S = 0.001   # expected_delay answers alike within a millisecond


@dataclass
class WorkItem:
    """One stream's pending operations, run in order: ("push", text), ("flush",), ("end",)."""

    encoder: StreamEncoder
    ops: list[tuple]
    deadline: float | None            # monotonic seconds by which frames must be out; None: no text waits
    future: asyncio.Future = field(default=None)
    degraded: bool = False
    queued_at: float = 0.0            # monotonic seconds
    model_tokens: int = 0             # tokens the run put through the model

    @property
    def forces_frames(self) -> bool:
        return any(op[0] != "push" for op in self.ops)

    def token_estimate(self, frame: int) -> float:
        """Tokens this item may put through the model: all it holds if it forces frames out,
        else only the full frames."""
        return token_estimate(self.encoder, sum(len(op[1]) for op in self.ops if op[0] == "push"),
                              self.forces_frames, frame)


def token_estimate(encoder: StreamEncoder, push_chars: int, forces_frames: bool, frame: int) -> float:
    """Tokens a stream's pending operations may put through the model: those ``encoder`` holds and
    ``push_chars`` characters of new text, all of them if the operations force frames out (a flush
    or a message end), else only the full frames of ``frame`` tokens."""
    held = encoder.held_tokens + (encoder.held_chars + push_chars) / CHARS_PER_TOKEN
    return held if forces_frames else frame * (held // frame)


def ops_frames(item: WorkItem) -> Frames[list[Batch]]:
    """``item``'s operations on its encoder, as frame requests (``coding.Frames``) -> the batches
    of its flushes and message ends, in order (pushes code full frames and hold them)."""
    enc = item.encoder
    enc.fallback_only = item.degraded             # shed the language model's work
    batches: list[Batch] = []
    tokens = enc.model_tokens
    try:
        for op in item.ops:
            if op[0] == "push":
                yield from enc.push_frames(op[1])
            elif op[0] == "flush":
                if (batch := (yield from enc.flush_frames())) is not None:
                    batches.append(batch)
            else:
                batches.append((yield from enc.end_message_frames()))
    finally:
        enc.fallback_only = False
        item.model_tokens = enc.model_tokens - tokens
    return batches


class ItemGroup:
    """Work items of one model run together: each round, one batched model call (a few when frame
    lengths differ much) computes the pending frame request of every item (``run``); the items
    that finished in a round are handed to ``settle`` together, each with its result or error."""

    def __init__(self, items: list[WorkItem]):
        self.items = items
        self.cost = 0.0          # seconds the whole group took
        self.model_s = 0.0       # seconds of it in model calls
        self.rounds = 0          # rounds of frame requests

    @property
    def shape(self) -> GroupShape:
        """What the group put through the model (after ``run``)."""
        return GroupShape(self.rounds, sum(item.model_tokens for item in self.items), len(self.items))

    def run(self, settle: Callable[[list[tuple[asyncio.Future, object, BaseException | None]]], None]) -> None:
        start = time.monotonic()
        step = self.items[0].encoder.parts.step
        waiting: dict[int, tuple[WorkItem, Frames, FrameRequest]] = {}
        done: list = []
        for i, item in enumerate(self.items):
            self._advance(waiting, done, i, item, ops_frames(item), None)
        while waiting:
            if done:
                settle(done)
                done = []
            order = list(waiting.values())
            started = time.monotonic()
            ranges = step.frames([r.state for _, _, r in order], [r.symbols for _, _, r in order])
            self.model_s += time.monotonic() - started
            self.rounds += 1
            for (i, (item, gen, _)), sent in zip(list(waiting.items()), ranges):
                self._advance(waiting, done, i, item, gen, sent)
        if done:
            settle(done)
        self.cost = time.monotonic() - start

    @staticmethod
    def _advance(waiting: dict, done: list, i: int, item: WorkItem, gen: Frames, sent) -> None:
        try:
            request = next(gen) if sent is None else gen.send(sent)
        except StopIteration as stop:
            waiting.pop(i, None)
            done.append((item.future, stop.value, None))
        except Exception as e:  # noqa: BLE001 - one stream's failure stays with that stream
            waiting.pop(i, None)
            done.append((item.future, None, e))
        else:
            waiting[i] = (item, gen, request)


class Scheduler:
    """Deadline-ordered work queue over ``workers`` threads (times in seconds)."""

    def __init__(self, metrics: Metrics, workers: int = 2, max_queue_delay_ms: float = 2.0,
                 max_batch: int = 64, frame: int = 16):
        self.metrics = metrics
        self.max_queue_delay = max_queue_delay_ms / 1000
        self.max_batch = max_batch
        self.workers = workers
        self.costs = CostModel(frame)
        self.lag = LoopLag()
        self.wait = DecayingMax(half_life=1.0)   # recent time from a flush's queueing to its start
        self._incoming: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._ready: list[tuple] = []          # heap of (due, seq, job); guarded by _cv
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._queued_cost = 0.0                # predicted cost of the work not yet started
        self._closed = False
        self._idle = 0                         # workers waiting for work; guarded by _cv
        self._expected, self._expected_at = 0.0, -math.inf    # expected_delay's last answer, and when
        self._threads = [threading.Thread(target=self._worker, name=f"rvqstream-model-{i}", daemon=True)
                         for i in range(workers)]
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for t in self._threads:
            t.start()
        self._tasks = [asyncio.create_task(self._gather(), name="rvqstream-scheduler"),
                       asyncio.create_task(self.lag.run(), name="rvqstream-loop-lag")]

    async def warm_up(self, codec: Codec) -> None:
        """Runs the model a few times (first runs allocate), then seeds the costs from a last pass:
        groups of three shapes (one stream's many frames, many streams' short flushes, an empty
        flush), so that the fits tell rounds, tokens and items apart."""
        words = WARM_UP_TEXT.split()
        short = [" ".join(words[i:i + 5]) for i in range(WARM_UP_STREAMS)]
        for seed in (False, False, True):
            if seed:
                self.costs = CostModel(self.costs.frame)
            await self.run(WorkItem(codec.encoder("exact"), [("push", WARM_UP_TEXT), ("end",)], None))
            await asyncio.gather(*(self.run(WorkItem(codec.encoder("exact"), [("push", text), ("end",)], None))
                                   for text in short))
            await self.run(WorkItem(codec.encoder("exact"), [("push", ""), ("end",)], None))
        self.costs.anchor()

    async def run(self, item: WorkItem) -> list[Batch]:
        """Queues ``item`` and returns its batches once it ran."""
        item.future = self._loop.create_future()
        item.queued_at = time.monotonic()
        self.metrics.queue_depth.add(1)
        self._incoming.put_nowait(item)
        return await item.future

    async def call(self, fn, *args):
        """Runs other model work (compress, decompress, decode) on the same threads, due now."""
        future = self._loop.create_future()
        self._push([(time.monotonic(), _Call(fn, args, future), 0.0)])
        return await future

    def expected_delay(self) -> float:
        """Seconds a flush of one frame queued now should take until its frame is out (for flush
        timers): the wait to start (the queued work shared by the workers, or, when more, the
        recent waits: streams flushing together queue behind each other), the frame itself, and
        the event loop's lag on the way out. Worked out at most once every
        ``EXPECTED_DELAY_REUSE_S`` (every incoming chunk asks)."""
        now = time.monotonic()
        if now - self._expected_at >= EXPECTED_DELAY_REUSE_S:
            self._expected = (max(self.max_queue_delay + self._queued_cost / self.workers, self.wait.value)
                              + self.lag.value + self.costs.one_frame())
            self._expected_at = now
        return self._expected

    async def _gather(self) -> None:
        """Collects items into batches (at most ``max_queue_delay`` of waiting) for the ready queue."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._incoming.get()]
            until = loop.time() + self.max_queue_delay
            while len(batch) < self.max_batch:
                if self._incoming.empty():
                    wait = until - loop.time()
                    if wait <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._incoming.get(), wait))
                    except TimeoutError:
                        break
                else:
                    batch.append(self._incoming.get_nowait())
            self.metrics.queue_depth.add(-len(batch))
            self.metrics.batch_size.record(len(batch))
            frame = self.costs.frame
            self._push([(math.inf if it.deadline is None else it.deadline, it,
                         self.costs.predict(GroupShape().plus(it.token_estimate(frame), frame, True)))
                        for it in batch])

    def _push(self, jobs: list[tuple]) -> None:
        with self._cv:
            for due, job, cost in jobs:
                heapq.heappush(self._ready, (due, next(self._seq), job, cost))
                self._queued_cost += cost
            self._cv.notify(len(jobs))

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._ready and not self._closed:
                    self._idle += 1
                    self._cv.wait()
                    self._idle -= 1
                if self._closed:
                    return
                _, _, job, cost = heapq.heappop(self._ready)
                self._queued_cost = max(0.0, self._queued_cost - cost)
                group = self._take_group(job) if isinstance(job, WorkItem) else []
                if self._ready:
                    self._cv.notify()              # what stays queued goes to another free worker
            if isinstance(job, _Call):
                self._settle(job.future, job.fn, *job.args)
                continue
            if not group:
                continue
            self.metrics.model_batch.record(len(group))
            run = ItemGroup(group)
            run.run(self._deliver)
            self.costs.update(run.shape, run.cost, run.model_s)

    def _take_group(self, first: WorkItem) -> list[WorkItem]:
        """``first`` and the ready items after it (due first) that run with it, up to ``max_batch``
        (caller holds ``_cv``; cancelled streams drop out). The model work of a group ends
        together, so one more item delays them all. An item joins when the group with it is
        predicted to have its frames out by its deadline and by every earlier member's. One that
        would make an earlier member late stays queued, with those due after it, when another
        worker is free to take them now and it makes its deadline in a group of its own; with no
        worker free it joins if it makes its own deadline. An item that makes its deadline in
        neither way joins degraded (its frames in fallback form, no model work). Only items of
        the same integer model share a group."""
        now, frame, lag = time.monotonic(), self.costs.frame, self.lag.value
        group: list[WorkItem] = []
        shape, finish_by = GroupShape(), math.inf
        kept: list[tuple] = []
        for entry in self._candidates(first, kept):
            it = entry[2]
            if it.future.done():
                continue
            estimate = it.token_estimate(frame)
            due = it.deadline if it.forces_frames and it.deadline is not None else math.inf
            with_model = shape.plus(estimate, frame, True)
            finish = now + lag + self.costs.predict(with_model)
            if (finish > min(finish_by, due) and group and self._idle
                    and now + lag + self.costs.predict(GroupShape().plus(estimate, frame, True)) <= due):
                kept.append(entry)            # it makes its deadline in a group of its own: an idle
                break                         # worker takes it, and those due after it, now
            if finish <= due:                 # (due is inf for an item none of whose text waits)
                shape, finish_by = with_model, min(finish_by, due)
            else:
                it.degraded = True
                shape = shape.plus(estimate, frame, False)
            if entry[0] is not None:
                self._queued_cost = max(0.0, self._queued_cost - entry[3])
            if it.forces_frames:
                self.wait.add(now - it.queued_at)
            group.append(it)
            if len(group) == self.max_batch:
                break
        for entry in kept:
            heapq.heappush(self._ready, entry)
        return group

    def _candidates(self, first: WorkItem, kept: list[tuple]) -> Iterator[tuple]:
        """Ready-queue entries that may join ``first``'s group, due first: ``first`` itself (its
        entry already popped: no predicted cost left to take off), then, for an integer model,
        the queued items of the same model, popped as they are asked for; other entries popped
        on the way go to ``kept``."""
        yield (None, None, first, 0.0)
        step = first.encoder.parts.step
        if not isinstance(step, IntStepModel):
            return
        while self._ready:
            entry = heapq.heappop(self._ready)
            if isinstance(entry[2], WorkItem) and entry[2].encoder.parts.step is step:
                yield entry
            else:
                kept.append(entry)

    def _deliver(self, results: list[tuple[asyncio.Future, object, BaseException | None]]) -> None:
        """Hands results (or exceptions) computed here to their futures on the loop, in one callback."""
        try:
            self._loop.call_soon_threadsafe(_resolve_all, results)
        except RuntimeError:     # the loop is closed: nobody waits any more
            pass

    def _settle(self, future: asyncio.Future, fn, *args) -> None:
        """Runs ``fn(*args)`` here and hands its result or exception to ``future`` on the loop."""
        try:
            result, error = fn(*args), None
        except Exception as e:  # noqa: BLE001 - one stream's failure stays with that stream
            result, error = None, e
        self._deliver([(future, result, error)])

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._cv:
            self._closed = True
            pending, self._ready = self._ready, []
            self._cv.notify_all()
        for _, _, job, _ in pending:
            _resolve(job.future, None, RuntimeError("the server is shutting down"))
        await asyncio.to_thread(lambda: [t.join() for t in self._threads])


@dataclass
class _Call:
    fn: object
    args: tuple
    future: asyncio.Future


def _resolve_all(results: list[tuple[asyncio.Future, object, BaseException | None]]) -> None:
    for future, result, error in results:
        _resolve(future, result, error)


def _resolve(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
